//! Money: always `rust_decimal::Decimal`, always a JSON string.
//!
//! Floats never come near an amount. `Usd` deserialises only from a JSON
//! string such as `"0.0123"` (a JSON number would already have been rounded
//! through `f64` by the parser) and refuses negative or absurd values, so a
//! handler holding a `Usd` knows it is a sane amount.

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// The largest single amount Tollgate accepts anywhere (a budget, a cost, an
/// estimate): one billion dollars. Keeps sums far from `Decimal`'s range.
pub const MAX_USD: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

/// A non-negative USD amount.
///
/// ```
/// use tollgate::money::Usd;
///
/// let budget: Usd = serde_json::from_str("\"5.00\"").unwrap();
/// assert_eq!(budget.to_string(), "5");
/// assert!(serde_json::from_str::<Usd>("5.00").is_err()); // a JSON number: refused
/// assert!("-1".parse::<Usd>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Usd(Decimal);

/// Why a text is not an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsdError {
    #[error("must be a decimal string such as \"0.01\"")]
    NotDecimal,
    #[error("must not be negative")]
    Negative,
    #[error("must be at most 1000000000")]
    TooLarge,
}

impl Usd {
    pub const ZERO: Usd = Usd(Decimal::ZERO);

    /// Wraps a decimal, checking the range.
    pub fn new(value: Decimal) -> Result<Self, UsdError> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(UsdError::Negative);
        }
        if value > MAX_USD {
            return Err(UsdError::TooLarge);
        }
        Ok(Usd(value.normalize()))
    }

    pub fn value(self) -> Decimal {
        self.0
    }
}

impl FromStr for Usd {
    type Err = UsdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let value = Decimal::from_str_exact(text.trim()).map_err(|_| UsdError::NotDecimal)?;
        Usd::new(value)
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Usd({})", self.0)
    }
}

impl Serialize for Usd {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Usd;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative decimal string such as \"0.01\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Usd, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Serialises a plain `Decimal` as a JSON string (for sums that may be
/// negative in principle, such as remaining budget after an overshoot).
pub fn decimal_as_string<S: Serializer>(value: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&value.normalize())
}

/// `Option<Decimal>` as a JSON string or null.
pub fn opt_decimal_as_string<S: Serializer>(value: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.collect_str(&v.normalize()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_strings() {
        assert_eq!("0.0123".parse::<Usd>().unwrap().to_string(), "0.0123");
        assert_eq!("12.2070".parse::<Usd>().unwrap().to_string(), "12.207");
        assert_eq!("-1".parse::<Usd>(), Err(UsdError::Negative));
        assert_eq!("abc".parse::<Usd>(), Err(UsdError::NotDecimal));
        assert_eq!("1e3".parse::<Usd>(), Err(UsdError::NotDecimal));
        assert_eq!("1000000001".parse::<Usd>(), Err(UsdError::TooLarge));
    }

    #[test]
    fn json_numbers_are_refused() {
        assert!(serde_json::from_str::<Usd>("0.01").is_err());
        assert_eq!(serde_json::from_str::<Usd>("\"0.01\"").unwrap().to_string(), "0.01");
        assert_eq!(
            serde_json::to_string(&"5.50".parse::<Usd>().unwrap()).unwrap(),
            "\"5.5\""
        );
    }
}
