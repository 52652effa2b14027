//! Model prices and the cost of one call.
//!
//! Prices are USD per million tokens. Cost is computed in `Decimal`, so
//! 1 234 input and 567 output tokens at 3 / 15 USD cost exactly 0.012207.

use crate::money::Usd;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Largest token count accepted for one call, input or output.
pub const MAX_TOKENS: u64 = 100_000_000;

const PER_MILLION: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

/// One model's prices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Price {
    /// USD per million input tokens.
    pub input_per_mtok_usd: Usd,
    /// USD per million output tokens.
    pub output_per_mtok_usd: Usd,
}

impl Price {
    /// `input × input price + output × output price`, per million tokens.
    ///
    /// ```
    /// use tollgate::limits::pricing::Price;
    ///
    /// let price = Price {
    ///     input_per_mtok_usd: "3".parse().unwrap(),
    ///     output_per_mtok_usd: "15".parse().unwrap(),
    /// };
    /// // Exact, never rounded through a float.
    /// assert_eq!(price.cost(1234, 567).to_string(), "0.012207");
    /// ```
    /// Token counts are bounded by [`MAX_TOKENS`] and prices by
    /// [`crate::money::MAX_USD`], so the product cannot overflow.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> Usd {
        let input = Decimal::from(input_tokens.min(MAX_TOKENS)) * self.input_per_mtok_usd.value();
        let output = Decimal::from(output_tokens.min(MAX_TOKENS)) * self.output_per_mtok_usd.value();
        let cost = ((input + output) / PER_MILLION).normalize();
        // Non-negative by construction; clamp keeps the type's promise even
        // for the largest inputs.
        Usd::new(cost).unwrap_or(Usd::new(crate::money::MAX_USD).unwrap_or(Usd::ZERO))
    }
}

/// Validates a model name used as a price key.
pub fn valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/' | '@'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usd(text: &str) -> Usd {
        text.parse().unwrap()
    }

    #[test]
    fn the_seed_example_is_exact() {
        let price = Price {
            input_per_mtok_usd: usd("3"),
            output_per_mtok_usd: usd("15"),
        };
        assert_eq!(price.cost(1234, 567).to_string(), "0.012207");
        let total: Decimal = (0..1000).map(|_| price.cost(1234, 567).value()).sum();
        assert_eq!(total.normalize().to_string(), "12.207");
    }

    proptest! {
        #[test]
        fn cost_is_linear_and_exact(i in 0u64..10_000_000, o in 0u64..10_000_000,
                                    pi in 0u32..1_000_000, po in 0u32..1_000_000) {
            let price = Price {
                input_per_mtok_usd: Usd::new(Decimal::new(pi.into(), 3)).unwrap(),
                output_per_mtok_usd: Usd::new(Decimal::new(po.into(), 3)).unwrap(),
            };
            let whole = price.cost(i, o).value();
            let parts = price.cost(i, 0).value() + price.cost(0, o).value();
            prop_assert_eq!(whole, parts);
            // Exact: multiplying back gives the integer micro-unit product.
            let micro = Decimal::from(i) * Decimal::new(pi.into(), 3) + Decimal::from(o) * Decimal::new(po.into(), 3);
            prop_assert_eq!(whole * PER_MILLION, micro);
        }
    }
}
