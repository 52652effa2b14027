//! DNS for alert deliveries that re-checks the address policy on every
//! connection. A name that resolved to a public address when its channel
//! was created may point at 169.254.169.254 by the time an alert is sent
//! (DNS rebinding); reqwest asks this resolver for each new connection, so
//! disallowed addresses are dropped right where they would be dialled.
//! IP-literal hosts never reach a resolver: senders check them with
//! [`AddressPolicy::check_url`] before sending.

use super::address_policy::{AddressPolicy, Refused};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};

/// A `reqwest` resolver (tokio's `getaddrinfo`) that only returns
/// addresses the policy allows, and fails if none is left.
#[derive(Debug, Clone, Copy)]
pub struct PolicyResolver {
    pub policy: AddressPolicy,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let allowed = resolve_allowed(&host, policy).await?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The addresses of `host` that `policy` allows (port 0: reqwest sets it).
async fn resolve_allowed(host: &str, policy: AddressPolicy) -> Result<Vec<SocketAddr>, Refused> {
    let all: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|_| Refused::Unresolved(host.to_string()))?
        .collect();
    let mut first_refused = None;
    let allowed: Vec<SocketAddr> = all
        .into_iter()
        .filter(|a| match policy.check_ip(a.ip()) {
            Ok(()) => true,
            Err(_) => {
                first_refused.get_or_insert(a.ip());
                false
            }
        })
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
/// for a host name — every address it resolves to must be allowed (stricter
/// than at delivery time, where disallowed ones are only skipped: a
/// tenant gets a clear 400 now rather than silent partial delivery later).
pub async fn vet_url(raw: &str, policy: AddressPolicy) -> Result<reqwest::Url, Refused> {
    let url = policy.check_url(raw)?;
    if policy.allow_private || super::address_policy::literal_host(&url).is_some() {
        return Ok(url);
    }
    let host = url.host_str().ok_or(Refused::NoHost)?.to_string();
    let addrs: Vec<IpAddr> = tokio::net::lookup_host((host.as_str(), 0))
        .await
        .map_err(|_| Refused::Unresolved(host.clone()))?
        .map(|a| a.ip())
        .collect();
    if addrs.is_empty() {
        return Err(Refused::Unresolved(host));
    }
    if let Some(addr) = addrs.into_iter().find(|ip| policy.check_ip(*ip).is_err()) {
        return Err(Refused::Resolves { host, addr });
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn localhost_resolves_to_nothing_allowed() {
        let strict = AddressPolicy::default();
        assert!(matches!(
            resolve_allowed("localhost", strict).await,
            Err(Refused::Resolves { .. })
        ));
        assert!(matches!(
            vet_url("https://localhost/hook", strict).await,
            Err(Refused::Resolves { .. })
        ));
        let open = AddressPolicy { allow_private: true };
        assert!(!resolve_allowed("localhost", open).await.unwrap().is_empty());
        assert!(vet_url("http://localhost:9/hook", open).await.is_ok());
    }
}
