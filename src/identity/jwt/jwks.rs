//! The issuer's keys, cached in memory and refetched only when needed.
//!
//! The hot path (a token whose `kid` is cached) takes one uncontended read
//! lock and no async lock. A `kid` not in the cache means either a rotation
//! (the issuer published a new key) or a made-up token, so it triggers a
//! refetch — but at most one fetch is in flight (the others wait for its
//! result instead of fetching too), and fetches are at least
//! `min_refetch_interval` apart, so made-up `kid`s cannot turn into load on
//! the issuer. When the issuer is unreachable the cached keys keep working.

use super::JwtError;
use super::config::JwtConfigError;
use super::jwks_fetch::{FetchError, KeySet, fetch_key_set};
use jsonwebtoken::DecodingKey;
use parking_lot::RwLock;
use reqwest::Url;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A cached, self-refreshing key set.
#[derive(Debug)]
pub struct JwksKeys {
    url: Url,
    client: reqwest::Client,
    min_refetch_interval: Duration,
    cache: RwLock<KeySet>,
    /// Held for the whole of a fetch: this is the single flight.
    fetching: tokio::sync::Mutex<FetchState>,
}

#[derive(Debug, Default)]
struct FetchState {
    /// When the last fetch for a token ended (success or failure). A failed
    /// startup fetch does not count, so the first token after it may retry.
    last_attempt: Option<Instant>,
}

impl JwksKeys {
    pub fn new(url: Url, fetch_timeout: Duration, min_refetch_interval: Duration) -> Result<Self, JwtConfigError> {
        let client = reqwest::Client::builder()
            .timeout(fetch_timeout)
            .connect_timeout(fetch_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| JwtConfigError::HttpClient(err.to_string()))?;
        Ok(JwksKeys {
            url,
            client,
            min_refetch_interval,
            cache: RwLock::new(KeySet::new()),
            fetching: tokio::sync::Mutex::new(FetchState::default()),
        })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The key for `kid`, fetching the key set if it is not cached and a
    /// fetch is allowed.
    pub async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, JwtError> {
        match self.cached(kid) {
            Some(key) => Ok(key),
            None => self.refetch_for(kid).await,
        }
    }

    /// Best-effort fetch at startup; failure is logged and leaves the first
    /// token to fetch. Returns whether keys were loaded.
    pub async fn warm_up(&self) -> bool {
        let mut state = self.fetching.lock().await;
        let loaded = self.fetch().await.is_ok();
        if loaded {
            state.last_attempt = Some(Instant::now());
        }
        loaded
    }

    /// How many keys are cached.
    pub fn cached_keys(&self) -> usize {
        self.cache.read().len()
    }

    fn cached(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        self.cache.read().get(kid).cloned()
    }

    async fn refetch_for(&self, kid: &str) -> Result<Arc<DecodingKey>, JwtError> {
        let mut state = self.fetching.lock().await;
        // Whoever held the lock before us may have fetched this very key.
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        if state
            .last_attempt
            .is_some_and(|at| at.elapsed() < self.min_refetch_interval)
        {
            return Err(if self.cached_keys() == 0 {
                JwtError::KeysUnavailable
            } else {
                JwtError::UnknownKid
            });
        }
        let fetched = self.fetch().await;
        // Stamped after the fetch: if this request is dropped mid-fetch, the
        // next waiter fetches instead of being refused without one.
        state.last_attempt = Some(Instant::now());
        match fetched {
            Ok(_) => self.cached(kid).ok_or(JwtError::UnknownKid),
            Err(_) => Err(JwtError::KeysUnavailable),
        }
    }

    /// Fetches and, on success, replaces the cache (so keys the issuer
    /// withdrew are dropped). On failure the cache is kept as it is.
    async fn fetch(&self) -> Result<usize, FetchError> {
        match fetch_key_set(&self.client, &self.url).await {
            Ok(keys) => {
                let count = keys.len();
                let previous = std::mem::replace(&mut *self.cache.write(), keys);
                drop(previous);
                metrics::counter!("tollgate_jwks_fetches_total", "result" => "ok").increment(1);
                tracing::info!(url = %self.url, keys = count, "fetched the JWT signing keys");
                Ok(count)
            }
            Err(err) => {
                metrics::counter!("tollgate_jwks_fetches_total", "result" => "error").increment(1);
                tracing::warn!(url = %self.url, error = %err, cached = self.cached_keys(), "JWKS fetch failed; keeping the cached keys");
                Err(err)
            }
        }
    }
}
