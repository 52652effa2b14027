//! Which destinations an alert may be sent to.
//!
//! A webhook URL is chosen by a tenant, and the node sending it sits inside
//! our network: without a policy, a channel pointing at
//! `http://169.254.169.254/…` or `https://10.0.0.5/admin` would make the
//! node fetch internal services for whoever created it (server-side request
//! forgery). So: `https` only, and only public unicast addresses — checked
//! when a channel is created *and* on every connection (DNS can change
//! between the two; see `resolver.rs`). `--alerts-allow-private` lifts both
//! rules for tests and closed networks. Pure: no DNS here.

use reqwest::Url;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a destination is refused. The text is shown to the API caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("target must be an absolute URL")]
    NotAUrl,
    #[error("target must use https")]
    NotHttps,
    #[error("target URL must not carry a user name or password")]
    Credentials,
    #[error("target URL has no host")]
    NoHost,
    #[error("target address {0} is not a public unicast address")]
    Address(IpAddr),
    #[error("target host {0} does not resolve")]
    Unresolved(String),
    #[error("target host {host} resolves to {addr}, which is not a public unicast address")]
    Resolves { host: String, addr: IpAddr },
    #[error("target must be an email address")]
    NotAnEmail,
}

/// The rules in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddressPolicy {
    /// `--alerts-allow-private`: plain `http` and any address are allowed.
    pub allow_private: bool,
}

impl AddressPolicy {
    /// Checks a webhook or Slack URL's form: scheme, no credentials, a host,
    /// and, when the host is an IP literal, the address. A host name still
    /// has to be resolved and each address checked with [`Self::check_ip`].
    pub fn check_url(&self, raw: &str) -> Result<Url, Refused> {
        let url = Url::parse(raw).map_err(|_| Refused::NotAUrl)?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_private => {}
            _ => return Err(Refused::NotHttps),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refused::Credentials);
        }
        match url.host() {
            None => Err(Refused::NoHost),
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)).map(|()| url),
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)).map(|()| url),
            Some(url::Host::Domain(_)) => Ok(url),
        }
    }

    /// Is `ip` a destination we may connect to?
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        if self.allow_private || is_public(ip) {
            Ok(())
        } else {
            Err(Refused::Address(ip))
        }
    }
}

/// The IP literal of a URL's host, if it is one. reqwest does not pass
/// literals through the resolver, so these are checked before sending.
pub fn literal_host(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// Checks an email channel's target: one plain address (`local@domain`),
/// as lettre parses it (no display name, no list).
pub fn check_email(raw: &str) -> Result<lettre::Address, Refused> {
    raw.parse::<lettre::Address>().map_err(|_| Refused::NotAnEmail)
}

/// A public unicast address: not loopback, private, shared (CGNAT),
/// link-local (which holds the cloud metadata service 169.254.169.254),
/// unique-local (AWS's IPv6 metadata fd00:ec2::254), unspecified,
/// multicast, broadcast, reserved or documentation. IPv6 addresses that
/// embed an IPv4 one (mapped, NAT64, 6to4) are judged by it.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let blocked = a == 0                                   // "this network", 0.0.0.0
        || a == 10                                         // private
        || a == 127                                        // loopback
        || (a == 100 && (64..128).contains(&b))            // shared address space (CGNAT)
        || (a == 169 && b == 254)                          // link-local, metadata
        || (a == 172 && (16..32).contains(&b))             // private
        || (a == 192 && b == 0 && c == 0)                  // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)                  // TEST-NET-1
        || (a == 192 && b == 88 && c == 99)                // 6to4 relay anycast
        || (a == 192 && b == 168)                          // private
        || (a == 198 && (18..20).contains(&b))             // benchmarking
        || (a == 198 && b == 51 && c == 100)               // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)                // TEST-NET-3
        || a >= 224; // multicast, reserved, broadcast
    !blocked
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_public_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    // 6to4 (2002::/16) reaches the IPv4 address in bits 16..48.
    if s[0] == 0x2002 {
        return is_public_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    // Only global unicast (2000::/3) is public; that leaves out ::, ::1,
    // unique-local fc00::/7, link-local fe80::/10, multicast ff00::/8 and
    // the IPv4-compatible ::/96.
    let global_unicast = s[0] & 0xe000 == 0x2000;
    let documentation = s[0] == 0x2001 && s[1] == 0x0db8; // 2001:db8::/32
    let ietf = s[0] == 0x2001 && s[1] < 0x0200; // 2001::/23: Teredo, benchmarking, ORCHID
    let documentation_new = s[0] == 0x3fff && s[1] < 0x1000; // 3fff::/20
    global_unicast && !documentation && !ietf && !documentation_new
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn refused(ip: &str) -> bool {
        !is_public(ip.parse().unwrap())
    }

    #[test]
    fn private_and_special_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.10",
            "198.51.100.1",
            "203.0.113.7",
            "198.18.0.1",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "::127.0.0.1",
        ] {
            assert!(refused(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "169.253.1.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:1.1.1.1",
            "64:ff9b::808:808",
        ] {
            assert!(!refused(ip), "{ip} should pass");
        }
    }

    #[test]
    fn urls_need_https_and_a_public_literal() {
        let strict = AddressPolicy::default();
        assert_eq!(strict.check_url("http://example.com/x"), Err(Refused::NotHttps));
        assert_eq!(strict.check_url("ftp://example.com/x"), Err(Refused::NotHttps));
        assert_eq!(strict.check_url("not a url"), Err(Refused::NotAUrl));
        assert_eq!(strict.check_url("https://u:p@example.com/"), Err(Refused::Credentials));
        assert!(matches!(
            strict.check_url("https://127.0.0.1/hook"),
            Err(Refused::Address(_))
        ));
        assert!(matches!(
            strict.check_url("https://[::ffff:a9fe:a9fe]/"),
            Err(Refused::Address(_))
        ));
        assert!(matches!(
            strict.check_url("https://0x7f000001/"),
            Err(Refused::Address(_))
        ));
        assert!(strict.check_url("https://hooks.example.com/x").is_ok());
        assert!(strict.check_url("https://1.1.1.1/x").is_ok());
        let open = AddressPolicy { allow_private: true };
        assert!(open.check_url("http://127.0.0.1:9/hook").is_ok());
        assert_eq!(open.check_url("ftp://127.0.0.1/"), Err(Refused::NotHttps));
    }

    #[test]
    fn email_targets_are_single_addresses() {
        assert!(check_email("ops@example.com").is_ok());
        assert_eq!(check_email("Ops <ops@example.com>"), Err(Refused::NotAnEmail));
        assert_eq!(check_email("ops"), Err(Refused::NotAnEmail));
        assert_eq!(check_email("a@b.com, c@d.com"), Err(Refused::NotAnEmail));
    }

    proptest! {
        /// An IPv4 address and its IPv4-mapped IPv6 form are judged alike.
        #[test]
        fn mapped_addresses_are_judged_as_ipv4(bits in any::<u32>()) {
            let v4 = Ipv4Addr::from(bits);
            prop_assert_eq!(is_public(IpAddr::V4(v4)), is_public(IpAddr::V6(v4.to_ipv6_mapped())));
        }

        /// Every address in a blocked range is refused, whatever its host bits.
        #[test]
        fn whole_ranges_are_refused(host in any::<u32>()) {
            for (net, len) in [([10, 0, 0, 0], 8), ([127, 0, 0, 0], 8), ([169, 254, 0, 0], 16), ([172, 16, 0, 0], 12), ([192, 168, 0, 0], 16), ([100, 64, 0, 0], 10), ([224, 0, 0, 0], 4)] {
                let mask = u32::MAX >> len;
                let ip = Ipv4Addr::from((u32::from(Ipv4Addr::from(net)) & !mask) | (host & mask));
                prop_assert!(!is_public(IpAddr::V4(ip)), "{}", ip);
            }
            let ula = Ipv6Addr::from((0xfc00u128 << 112) | (u128::from(host) << 7) | 1);
            prop_assert!(!is_public(IpAddr::V6(ula)));
        }
    }
}
