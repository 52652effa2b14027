//! Free loopback ports for nodes.
//!
//! A port is found by binding port 0 and releasing it. Ports handed out are
//! remembered for the life of the process so that two clusters started by
//! parallel tests never get the same one; another process may still grab a
//! port in between, which [`crate::cluster::Cluster`] handles by retrying a
//! node start with fresh ports.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Mutex;

static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Which protocol the port will be used with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// A loopback address with a port that was free a moment ago and has not
/// been handed out before by this process.
pub fn free_loopback(proto: Proto) -> std::io::Result<SocketAddr> {
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    for _ in 0..100 {
        let addr = match proto {
            Proto::Tcp => TcpListener::bind(any)?.local_addr()?,
            Proto::Udp => UdpSocket::bind(any)?.local_addr()?,
        };
        let mut taken = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        if taken.insert(addr.port()) {
            return Ok(addr);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no fresh loopback port after 100 tries",
    ))
}

/// A fixed loopback address, marked as handed out (for `up --base-port`).
pub fn fixed_loopback(port: u16) -> SocketAddr {
    HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner()).insert(port);
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_never_handed_out_twice() {
        let mut seen = BTreeSet::new();
        for i in 0..50 {
            let proto = if i % 2 == 0 { Proto::Tcp } else { Proto::Udp };
            let addr = free_loopback(proto).expect("free port");
            assert!(addr.ip().is_loopback());
            assert!(seen.insert(addr.port()), "{addr} handed out twice");
        }
    }
}
