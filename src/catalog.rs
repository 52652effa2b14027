//! The in-memory catalogue: tiers and model prices.
//!
//! Loaded from the store at start-up and updated by the admin API after the
//! store has accepted a change, so a check never reads the database. Actors
//! cache their tier and re-read it only when `version` moves.

use crate::limits::pricing::Price;
use crate::limits::tier::{DEFAULT_TIER, Tier};
use crate::money::Usd;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Catalog {
    tiers: RwLock<HashMap<String, Arc<Tier>>>,
    prices: RwLock<HashMap<String, Price>>,
    /// Bumped on every tier change.
    tier_version: AtomicU64,
}

impl Catalog {
    pub fn new(tiers: Vec<Tier>, prices: Vec<(String, Price)>) -> Self {
        Catalog {
            tiers: RwLock::new(tiers.into_iter().map(|t| (t.name.clone(), Arc::new(t))).collect()),
            prices: RwLock::new(prices.into_iter().collect()),
            tier_version: AtomicU64::new(1),
        }
    }

    pub fn tier_version(&self) -> u64 {
        self.tier_version.load(Ordering::Acquire)
    }

    /// The named tier, if it exists.
    pub fn tier(&self, name: &str) -> Option<Arc<Tier>> {
        self.tiers.read().get(name).cloned()
    }

    /// The named tier, falling back to the default tier and then to the
    /// seed's free values, so an entity always has limits.
    pub fn tier_or_default(&self, name: &str) -> Arc<Tier> {
        let tiers = self.tiers.read();
        if let Some(t) = tiers.get(name).or_else(|| tiers.get(DEFAULT_TIER)) {
            return t.clone();
        }
        Arc::new(Tier {
            name: DEFAULT_TIER.to_string(),
            daily_limit: 10,
            monthly_limit: Some(100),
            rpm: None,
            price_monthly_usd: Usd::ZERO,
        })
    }

    pub fn put_tier(&self, tier: Tier) {
        self.tiers.write().insert(tier.name.clone(), Arc::new(tier));
        self.tier_version.fetch_add(1, Ordering::AcqRel);
    }

    /// Re-reads every tier and price from the store (another node changed
    /// one). Tiers and prices are never deleted, so upserting is enough.
    pub async fn reload(&self, store: &crate::store::Store) -> Result<(), crate::store::StoreError> {
        let tiers = store.load_tiers().await?;
        let prices = store.load_prices().await?;
        let changed = {
            let current = self.tiers.read();
            tiers.iter().any(|t| current.get(&t.name).is_none_or(|c| **c != *t))
        };
        if changed {
            for tier in tiers {
                self.put_tier(tier);
            }
        }
        for (model, price) in prices {
            self.put_price(&model, price);
        }
        Ok(())
    }

    pub fn tiers(&self) -> Vec<Arc<Tier>> {
        let mut all: Vec<_> = self.tiers.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub fn price(&self, model: &str) -> Option<Price> {
        self.prices.read().get(model).copied()
    }

    pub fn put_price(&self, model: &str, price: Price) {
        self.prices.write().insert(model.to_string(), price);
    }
}
