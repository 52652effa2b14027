//! Tiers: the limits an entity gets. Editable data, not code.

use crate::money::Usd;
use serde::{Deserialize, Serialize};

/// The tier every guest IP and fingerprint is limited by.
pub const GUEST_TIER: &str = "guest";
/// The tier of a user or organisation nobody has assigned one to.
pub const DEFAULT_TIER: &str = "free";

/// Largest daily or monthly request limit a tier may have.
pub const MAX_REQUEST_LIMIT: u64 = 1_000_000_000;
/// Largest per-minute burst rate a tier may have.
pub const MAX_RPM: u32 = 1_000_000;

/// One tier's limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tier {
    /// 1-64 characters of `a-z`, `0-9`, `-` and `_`.
    #[schema(example = "pro")]
    pub name: String,
    /// Requests per fixed 24 h window.
    #[schema(maximum = 1_000_000_000, example = 100)]
    pub daily_limit: u64,
    /// Requests per calendar month (UTC); null = no monthly cap.
    #[schema(required = true, maximum = 1_000_000_000, example = 3000)]
    pub monthly_limit: Option<u64>,
    /// Optional per-minute burst limit (GCRA); null = none.
    #[schema(required = true, minimum = 1, maximum = 1_000_000)]
    pub rpm: Option<u32>,
    /// What the tier costs its subscriber; informational.
    pub price_monthly_usd: Usd,
}

/// Why a tier definition is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TierError {
    #[error("name must be 1-64 characters of a-z, 0-9, '-' or '_'")]
    BadName,
    #[error("{0} must be at most {MAX_REQUEST_LIMIT}")]
    LimitTooLarge(&'static str),
    #[error("rpm must be between 1 and {MAX_RPM}")]
    BadRpm,
}

impl Tier {
    pub fn validate(&self) -> Result<(), TierError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(TierError::BadName);
        }
        if self.daily_limit > MAX_REQUEST_LIMIT {
            return Err(TierError::LimitTooLarge("daily_limit"));
        }
        if self.monthly_limit.is_some_and(|m| m > MAX_REQUEST_LIMIT) {
            return Err(TierError::LimitTooLarge("monthly_limit"));
        }
        if self.rpm.is_some_and(|r| r == 0 || r > MAX_RPM) {
            return Err(TierError::BadRpm);
        }
        Ok(())
    }
}
