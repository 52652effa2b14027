//! How many new entities one client may bring into memory per second.
//!
//! Every entity a request names that is not resident costs a store read
//! and, for a check, an actor of ~8 KiB. A guest names its own fingerprint,
//! so without a bound one client could make as many entities as it sends
//! requests. This is a fixed one-second window per client (IP, or IPv6
//! network): at most `per_second` new entities in each calendar second,
//! so at most twice that across a window boundary. The table of clients is
//! bounded too: it is emptied every window, and when it is full, clients
//! not yet in it are refused until the window ends (the resident cap is
//! the backstop either way; refusing keeps memory bounded whatever the
//! number of addresses a flood comes from).

use std::collections::HashMap;
use std::hash::Hash;

/// Default new entities per client per second. An honest guest has two
/// entities (IP and fingerprint) and, on the `guest` tier, ten checks a
/// day; a handful per second leaves it untouched behind a shared NAT too.
pub const DEFAULT_PER_SECOND: u32 = 10;

/// The window length.
pub const WINDOW_MS: i64 = 1000;

/// Most clients tracked within one window (≈ 64 B each: a few MiB).
pub const MAX_CLIENTS: usize = 65_536;

/// Refused: try again at `retry_at_ms` (the next window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyNew {
    pub retry_at_ms: i64,
}

/// Per-client counts of new entities in the current window.
#[derive(Debug)]
pub struct NewEntityCap<K> {
    per_window: u32,
    capacity: usize,
    window_start_ms: i64,
    counts: HashMap<K, u32>,
}

impl<K: Hash + Eq + Clone> NewEntityCap<K> {
    /// At most `per_window` new entities per client per window, at most
    /// `capacity` clients tracked at once.
    pub fn new(per_window: u32, capacity: usize) -> Self {
        NewEntityCap {
            per_window,
            capacity,
            window_start_ms: i64::MIN,
            counts: HashMap::new(),
        }
    }

    /// Takes `n` new entities for `client` if its window allows all of
    /// them; takes nothing otherwise. `n == 0` always passes.
    pub fn try_take(&mut self, client: &K, n: u32, now_ms: i64) -> Result<(), TooManyNew> {
        let window = now_ms - now_ms.rem_euclid(WINDOW_MS);
        if window != self.window_start_ms {
            self.counts.clear();
            self.window_start_ms = window;
        }
        if n == 0 {
            return Ok(());
        }
        let refused = TooManyNew {
            retry_at_ms: window.saturating_add(WINDOW_MS),
        };
        let room = self.counts.len() < self.capacity;
        match self.counts.get_mut(client) {
            Some(count) if count.saturating_add(n) <= self.per_window => {
                *count += n;
                Ok(())
            }
            Some(_) => Err(refused),
            None if n <= self.per_window && room => {
                self.counts.insert(client.clone(), n);
                Ok(())
            }
            None => Err(refused),
        }
    }

    /// Clients tracked in the current window.
    pub fn tracked(&self) -> usize {
        self.counts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_window_allows_its_quota_then_refuses_until_the_next() {
        let mut cap = NewEntityCap::new(3, 10);
        assert!(cap.try_take(&"a", 2, 5_000).is_ok());
        assert!(cap.try_take(&"a", 1, 5_100).is_ok());
        assert_eq!(cap.try_take(&"a", 1, 5_999), Err(TooManyNew { retry_at_ms: 6_000 }));
        // Another client has its own quota; nothing new is always fine.
        assert!(cap.try_take(&"b", 3, 5_999).is_ok());
        assert!(cap.try_take(&"a", 0, 5_999).is_ok());
        assert!(cap.try_take(&"a", 3, 6_000).is_ok());
    }

    #[test]
    fn a_full_table_refuses_new_clients_only() {
        let mut cap = NewEntityCap::new(5, 2);
        assert!(cap.try_take(&1, 1, 0).is_ok());
        assert!(cap.try_take(&2, 1, 0).is_ok());
        assert!(cap.try_take(&3, 1, 0).is_err());
        assert!(cap.try_take(&1, 1, 0).is_ok());
        assert!(cap.try_take(&3, 1, 1_000).is_ok());
    }

    proptest! {
        /// Whatever the sequence, no client gets more than its quota in
        /// any window, and the table never outgrows its capacity.
        #[test]
        fn quota_and_table_hold(ops in proptest::collection::vec((0u8..20, 0u32..4, 0i64..50), 1..300)) {
            let mut cap = NewEntityCap::new(5, 8);
            let mut now = 0i64;
            let mut taken: HashMap<(u8, i64), u32> = HashMap::new();
            for (client, n, step) in ops {
                now += step * 10;
                if cap.try_take(&client, n, now).is_ok() {
                    *taken.entry((client, now / WINDOW_MS)).or_default() += n;
                }
                prop_assert!(cap.tracked() <= 8);
            }
            prop_assert!(taken.values().all(|&t| t <= 5));
        }
    }
}
