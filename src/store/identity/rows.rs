//! Helpers both backends share: the stored forms of scopes and roles, the
//! shape of key rows, batching of key uses, and summary totals.

use super::{ApiKeyRecord, KeySecret, Membership, OrgRole, SummaryRow};
use crate::store::{StoreError, StoreResult};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// The stored form of a scope list. Refuses what would not read back the
/// same (an empty scope or one with a comma) rather than corrupting it.
pub(in crate::store) fn scopes_text(scopes: &[String]) -> StoreResult<String> {
    if let Some(bad) = scopes.iter().find(|s| s.is_empty() || s.contains(',')) {
        return Err(invalid(format!(
            "scope {bad:?} cannot be stored (empty or contains a comma)"
        )));
    }
    Ok(scopes.join(","))
}

/// A stored scope list (`""` is no scopes).
pub(in crate::store) fn scopes_from_text(text: &str) -> Vec<String> {
    text.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// Refuses anything but a lowercase hex SHA-256, so that a plaintext secret
/// passed by mistake is never written to the database.
pub(in crate::store) fn check_secret_hash(hash: &str) -> StoreResult<()> {
    if hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(invalid(
            "secret_hash must be a lowercase hex SHA-256 (64 characters)".to_string(),
        ))
    }
}

/// A stored role.
pub(in crate::store) fn stored_role(text: &str) -> StoreResult<OrgRole> {
    text.parse().map_err(|_| StoreError::Corrupt {
        column: "org_members.role",
        value: text.to_string(),
    })
}

/// Memberships from `(org_id, user_id, role)` rows.
pub(in crate::store) fn memberships(rows: Vec<(String, String, String)>) -> StoreResult<Vec<Membership>> {
    rows.into_iter()
        .map(|(org_id, user_id, role)| {
            Ok(Membership {
                org_id,
                user_id,
                role: stored_role(&role)?,
            })
        })
        .collect()
}

/// An `api_keys` row as both backends select it (times as Unix ms): id,
/// name, scopes, org, user, created by, created, revoked, last used.
pub(in crate::store) type KeyRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    Option<i64>,
    Option<i64>,
);

/// A key row left-joined with one of its secrets (hash, expiry), if any.
pub(in crate::store) type KeyWithSecretRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<i64>,
);

pub(in crate::store) fn api_key_from_row(row: KeyRow) -> ApiKeyRecord {
    let (id, name, scopes, org_id, user_id, created_by, created_at_ms, revoked_at_ms, last_used_at_ms) = row;
    ApiKeyRecord {
        id,
        name,
        scopes: scopes_from_text(&scopes),
        org_id,
        user_id,
        created_by,
        created_at_ms,
        revoked_at_ms,
        last_used_at_ms,
    }
}

/// Keys with their secrets from join rows ordered by key id (a key without
/// a live secret comes as one row with no hash, and gets an empty list).
pub(in crate::store) fn group_key_rows(rows: Vec<KeyWithSecretRow>) -> Vec<(ApiKeyRecord, Vec<KeySecret>)> {
    let mut keys: Vec<(ApiKeyRecord, Vec<KeySecret>)> = Vec::new();
    for (id, name, scopes, org_id, user_id, created_by, created, revoked, last_used, hash, expires_at_ms) in rows {
        if keys.last().is_none_or(|(key, _)| key.id != id) {
            let key = api_key_from_row((
                id, name, scopes, org_id, user_id, created_by, created, revoked, last_used,
            ));
            keys.push((key, Vec::new()));
        }
        if let (Some(secret_hash), Some((key, secrets))) = (hash, keys.last_mut()) {
            secrets.push(KeySecret {
                secret_hash,
                key_id: key.id.clone(),
                expires_at_ms,
            });
        }
    }
    keys
}

/// The newest use of each key in a batch, in key order (a fixed lock order
/// for Postgres, and one update per key).
pub(in crate::store) fn latest_uses(used: &[(String, i64)]) -> Vec<(&str, i64)> {
    let mut latest: BTreeMap<&str, i64> = BTreeMap::new();
    for (id, at) in used {
        let entry = latest.entry(id.as_str()).or_insert(*at);
        *entry = (*entry).max(*at);
    }
    latest.into_iter().collect()
}

/// A summary row under construction (SQLite adds rows up one by one, as it
/// cannot sum money exactly in SQL).
#[derive(Debug, Default)]
pub(in crate::store) struct SummaryTotals {
    groups: BTreeMap<String, SummaryRow>,
}

impl SummaryTotals {
    /// Adds `events` ledger rows' totals to `group`.
    pub(in crate::store) fn add(
        &mut self,
        group: String,
        events: u64,
        input: u64,
        output: u64,
        cost: Decimal,
    ) -> StoreResult<()> {
        let row = self.groups.entry(group).or_insert_with_key(|group| SummaryRow {
            group: group.clone(),
            events: 0,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: Decimal::ZERO,
        });
        let overflow = || invalid("usage summary total overflows".to_string());
        row.events = row.events.checked_add(events).ok_or_else(overflow)?;
        row.input_tokens = row.input_tokens.checked_add(input).ok_or_else(overflow)?;
        row.output_tokens = row.output_tokens.checked_add(output).ok_or_else(overflow)?;
        row.cost_usd = crate::store::checked_add(row.cost_usd, cost)?;
        Ok(())
    }

    /// The groups in byte order of their names (the same on both backends,
    /// whatever the database's collation).
    pub(in crate::store) fn into_rows(self) -> Vec<SummaryRow> {
        self.groups
            .into_values()
            .map(|row| SummaryRow {
                cost_usd: row.cost_usd.normalize(),
                ..row
            })
            .collect()
    }
}

/// The UTC date of a Unix-ms instant, `YYYY-MM-DD`.
pub(in crate::store) fn utc_day(ms: i64) -> StoreResult<String> {
    let corrupt = || StoreError::Corrupt {
        column: "model_usage.created_at",
        value: ms.to_string(),
    };
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).map_err(|_| corrupt())?;
    at.date()
        .format(time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| corrupt())
}

fn invalid(message: String) -> StoreError {
    StoreError::Database(sqlx::Error::InvalidArgument(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip() {
        for role in [OrgRole::Owner, OrgRole::Admin, OrgRole::Member] {
            assert_eq!(role.as_str().parse::<OrgRole>(), Ok(role));
        }
        assert!("Owner".parse::<OrgRole>().is_err());
    }

    #[test]
    fn scopes_round_trip_or_are_refused() {
        let scopes = vec!["check".to_string(), "usage:write".to_string()];
        assert_eq!(scopes_from_text(&scopes_text(&scopes).unwrap()), scopes);
        assert_eq!(scopes_from_text(&scopes_text(&[]).unwrap()), Vec::<String>::new());
        assert!(scopes_text(&["a,b".to_string()]).is_err());
        assert!(scopes_text(&[String::new()]).is_err());
    }

    #[test]
    fn only_hashes_are_accepted_as_secrets() {
        assert!(check_secret_hash(&"ab".repeat(32)).is_ok());
        assert!(check_secret_hash(&"AB".repeat(32)).is_err());
        assert!(check_secret_hash("tg_live_plaintext").is_err());
    }

    #[test]
    fn latest_use_per_key() {
        let used = vec![
            ("b".to_string(), 5),
            ("a".to_string(), 9),
            ("b".to_string(), 7),
            ("b".to_string(), 6),
        ];
        assert_eq!(latest_uses(&used), vec![("a", 9), ("b", 7)]);
    }

    #[test]
    fn days_are_utc() {
        assert_eq!(utc_day(1_795_838_400_000).unwrap(), "2026-11-28");
        assert_eq!(utc_day(86_400_000 - 1).unwrap(), "1970-01-01");
        assert_eq!(utc_day(-1).unwrap(), "1969-12-31");
    }
}
