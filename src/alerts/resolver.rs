//! DNS for alert deliveries that re-checks the address policy on every
//! connection. A name that resolved to a public address when its channel
//! was created may point at 169.254.169.254 by the time an alert is sent
//! (DNS rebinding); reqwest asks this resolver for each new connection, so
//! disallowed addresses are dropped right where they would be dialled.
//! IP-literal hosts never reach a resolver: senders check them with
//! [`AddressPolicy::check_url`] before sending.
//!
//! Operators may pin names to addresses (`--alerts-resolve host=ip`, as
//! `curl --resolve` does) for closed networks without DNS or split-horizon
//! setups. A pin replaces DNS for that name only; its addresses pass the
//! same policy as looked-up ones, so a pin cannot open a way inside.

use super::address_policy::{AddressPolicy, Refused};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

/// One `--alerts-resolve` value: `host=ip`. Repeat the flag to give a name
/// several addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPin {
    pub host: String,
    pub addr: IpAddr,
}

/// Why a `--alerts-resolve` value was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostPinError {
    #[error("expected host=ip, got {0:?}")]
    Shape(String),
    #[error("{0:?} is not an IP address")]
    Addr(String),
    #[error("{0:?} is not a host name")]
    Host(String),
}

impl FromStr for HostPin {
    type Err = HostPinError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, addr) = s.split_once('=').ok_or_else(|| HostPinError::Shape(s.to_string()))?;
        let host = normalise(host);
        let valid = !host.is_empty()
            && host.len() <= 253
            && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !valid {
            return Err(HostPinError::Host(host));
        }
        let addr = addr.trim();
        let addr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| HostPinError::Addr(addr.to_string()))?;
        Ok(HostPin { host, addr })
    }
}

/// Host names are compared lowercase and without the root's trailing dot.
fn normalise(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// How alert deliveries turn host names into addresses: pins first, then
/// the system resolver (tokio's `getaddrinfo`), always through the policy.
/// Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct AlertResolver {
    pub policy: AddressPolicy,
    pins: Arc<HashMap<String, Vec<IpAddr>>>,
}

impl AlertResolver {
    pub fn new(policy: AddressPolicy, pins: &[HostPin]) -> AlertResolver {
        let mut map: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for pin in pins {
            let addrs = map.entry(pin.host.clone()).or_default();
            if !addrs.contains(&pin.addr) {
                addrs.push(pin.addr);
            }
        }
        AlertResolver {
            policy,
            pins: Arc::new(map),
        }
    }

    /// Every address of `host`, allowed or not.
    async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, Refused> {
        if let Some(pinned) = self.pins.get(&normalise(host)) {
            return Ok(pinned.clone());
        }
        let addrs: Vec<IpAddr> = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|_| Refused::Unresolved(host.to_string()))?
            .map(|a| a.ip())
            .collect();
        if addrs.is_empty() {
            return Err(Refused::Unresolved(host.to_string()));
        }
        Ok(addrs)
    }

    /// The addresses of `host` that the policy allows (port 0: reqwest
    /// sets it); an error naming the first refused one if none is left.
    async fn resolve_allowed(&self, host: &str) -> Result<Vec<SocketAddr>, Refused> {
        let all = self.lookup(host).await?;
        let mut first_refused = None;
        let allowed: Vec<SocketAddr> = all
            .into_iter()
            .filter(|ip| match self.policy.check_ip(*ip) {
                Ok(()) => true,
                Err(_) => {
                    first_refused.get_or_insert(*ip);
                    false
                }
            })
            .map(|ip| SocketAddr::new(ip, 0))
            .collect();
        match (allowed.is_empty(), first_refused) {
            (false, _) => Ok(allowed),
            (true, Some(addr)) => Err(Refused::Resolves {
                host: host.to_string(),
                addr,
            }),
            (true, None) => Err(Refused::Unresolved(host.to_string())),
        }
    }

    /// The check a channel's URL gets when it is created: its form, then —
    /// for a host name — every address it resolves to must be allowed
    /// (stricter than at delivery time, where disallowed ones are only
    /// skipped: a tenant gets a clear 400 now rather than silent partial
    /// delivery later).
    pub async fn vet_url(&self, raw: &str) -> Result<reqwest::Url, Refused> {
        let url = self.policy.check_url(raw)?;
        if self.policy.allow_private || super::address_policy::literal_host(&url).is_some() {
            return Ok(url);
        }
        let host = url.host_str().ok_or(Refused::NoHost)?.to_string();
        let addrs = self.lookup(&host).await?;
        if let Some(addr) = addrs.into_iter().find(|ip| self.policy.check_ip(*ip).is_err()) {
            return Err(Refused::Resolves { host, addr });
        }
        Ok(url)
    }
}

impl Resolve for AlertResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.clone();
        Box::pin(async move {
            let allowed = resolver.resolve_allowed(name.as_str()).await?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(s: &str) -> HostPin {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn localhost_resolves_to_nothing_allowed() {
        let strict = AlertResolver::default();
        assert!(matches!(
            strict.resolve_allowed("localhost").await,
            Err(Refused::Resolves { .. })
        ));
        assert!(matches!(
            strict.vet_url("https://localhost/hook").await,
            Err(Refused::Resolves { .. })
        ));
        let open = AlertResolver::new(AddressPolicy { allow_private: true }, &[]);
        assert!(!open.resolve_allowed("localhost").await.unwrap().is_empty());
        assert!(open.vet_url("http://localhost:9/hook").await.is_ok());
    }

    #[tokio::test]
    async fn pinned_names_pass_the_same_policy() {
        let pins = [
            pin("Metadata.Example.=169.254.169.254"),
            pin("public.example=93.184.215.14"),
            pin("mixed.example=93.184.215.14"),
            pin("mixed.example=[fd00:ec2::254]"),
        ];
        let strict = AlertResolver::new(AddressPolicy::default(), &pins);
        assert_eq!(
            strict.vet_url("https://metadata.example/latest").await,
            Err(Refused::Resolves {
                host: "metadata.example".into(),
                addr: "169.254.169.254".parse().unwrap()
            })
        );
        assert!(strict.vet_url("https://public.example/hook").await.is_ok());
        // At creation every address must be allowed; at delivery the bad
        // one is skipped.
        assert!(strict.vet_url("https://mixed.example/hook").await.is_err());
        let dialled = strict.resolve_allowed("mixed.example").await.unwrap();
        assert_eq!(dialled, vec!["93.184.215.14:0".parse().unwrap()]);
    }

    #[test]
    fn pins_parse_or_say_why_not() {
        assert_eq!(
            pin("a.example=::1"),
            HostPin {
                host: "a.example".into(),
                addr: "::1".parse().unwrap()
            }
        );
        assert!(matches!("a.example".parse::<HostPin>(), Err(HostPinError::Shape(_))));
        assert!(matches!("a.example=".parse::<HostPin>(), Err(HostPinError::Addr(_))));
        assert!(matches!("=1.2.3.4".parse::<HostPin>(), Err(HostPinError::Host(_))));
        assert!(matches!("a b=1.2.3.4".parse::<HostPin>(), Err(HostPinError::Host(_))));
    }
}
