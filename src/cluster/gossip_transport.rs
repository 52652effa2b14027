//! chitchat's [`Transport`] over UDP with every datagram authenticated by
//! HMAC-SHA256.
//!
//! # Wire format
//!
//! ```text
//! version (1 byte = 1) ‖ sent_at (u64 LE, Unix ms) ‖ chitchat payload ‖ tag (32 bytes)
//! tag = HMAC-SHA256(gossip_key, version ‖ sent_at ‖ payload)
//! gossip_key = HMAC-SHA256(cluster_secret, "tollgate-gossip-v1")
//! ```
//!
//! A datagram that is too short, has another version, a wrong tag (checked in
//! constant time) or a `sent_at` further than [`GossipAuth::max_skew`] from
//! this node's clock is dropped before chitchat sees it, and counted in
//! `tollgate_gossip_rejected_total{reason}`.
//!
//! # What is protected, what is not
//!
//! - Protected: a process without the secret can neither join (its SYNs are
//!   dropped, so no node learns of it), nor inject or alter node state, nor
//!   forge a heartbeat that keeps a dead node alive; a datagram captured more
//!   than `max_skew` ago cannot be replayed.
//! - Not protected: confidentiality (gossip is in clear: addresses and status
//!   are readable on the wire); replays inside the `max_skew` window — which
//!   are harmless to chitchat, whose state is versioned and whose merges are
//!   idempotent, so a replay brings nothing newer than what was already
//!   accepted; and flooding (each bad datagram still costs one HMAC).
//!   `max_skew` also means nodes need roughly synchronised clocks (NTP).
//!
//! # Why a relay through loopback
//!
//! chitchat 0.13 hands a [`Socket`] a decoded [`ChitchatEnvelope`] and keeps
//! the envelope's (de)serialisation crate-private (upstream issue
//! quickwit-oss/chitchat#207, open; once it is public, `encode` and the
//! pending-decode step collapse into direct calls). So the socket keeps a
//! private pair of loopback sockets: chitchat's own [`UdpSocket`] as the
//! *codec* and a *tap*. To send, the codec sends the envelope to the tap
//! (which yields the bytes), and the bytes are sealed and sent from the
//! public socket. To receive, a verified payload is sent from the tap to the
//! codec, which decodes it. The relay only accepts datagrams from its partner
//! socket's address, so nothing reaches chitchat without a valid tag. It
//! costs two loopback syscalls per gossip datagram (a few per gossip round).
//! Loopback (`127.0.0.1`) must be up, including inside a network namespace.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use async_trait::async_trait;
use chitchat::ChitchatEnvelope;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket as CodecSocket};
use hmac::Mac;
use parking_lot::Mutex;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::PeerFilter;
use super::secret::{ClusterSecret, DerivedKey, GOSSIP_LABEL};

/// Largest UDP payload (IPv4).
const MAX_DATAGRAM: usize = 65_507;
const VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 8;
const TAG_LEN: usize = 32;
/// How long the relay waits for its partner socket. Loopback delivery is
/// synchronous, so this only bounds the (never observed) case of a datagram
/// that chitchat cannot decode, which its codec silently skips.
const RELAY_TIMEOUT: Duration = Duration::from_millis(200);

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    TooShort,
    BadVersion,
    BadTag,
    Stale,
}

impl Rejected {
    fn label(self) -> &'static str {
        match self {
            Rejected::TooShort => "too_short",
            Rejected::BadVersion => "bad_version",
            Rejected::BadTag => "bad_tag",
            Rejected::Stale => "stale",
        }
    }
}

/// The gossip key and the clock tolerance; seals and opens datagrams.
#[derive(Clone, Debug)]
pub struct GossipAuth {
    key: DerivedKey,
    /// Largest accepted difference between a datagram's `sent_at` and this
    /// node's clock, either way.
    pub max_skew: Duration,
}

impl GossipAuth {
    pub fn new(secret: &ClusterSecret) -> GossipAuth {
        GossipAuth {
            key: secret.derive(GOSSIP_LABEL),
            max_skew: Duration::from_secs(60),
        }
    }

    /// Appends the sealed datagram for `payload`, sent at `now_ms`, to `out`.
    pub fn seal(&self, payload: &[u8], now_ms: u64, out: &mut Vec<u8>) {
        out.push(VERSION);
        out.extend_from_slice(&now_ms.to_le_bytes());
        out.extend_from_slice(payload);
        let mut mac = self.key.mac();
        mac.update(out);
        out.extend_from_slice(&mac.finalize().into_bytes());
    }

    /// The payload of an authentic, fresh datagram.
    pub fn open<'a>(&self, datagram: &'a [u8], now_ms: u64) -> Result<&'a [u8], Rejected> {
        if datagram.len() < HEADER_LEN + TAG_LEN {
            return Err(Rejected::TooShort);
        }
        let (signed, tag) = datagram.split_at(datagram.len() - TAG_LEN);
        if signed[0] != VERSION {
            return Err(Rejected::BadVersion);
        }
        let mut mac = self.key.mac();
        mac.update(signed);
        mac.verify_slice(tag).map_err(|_| Rejected::BadTag)?;
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&signed[1..HEADER_LEN]);
        let sent_at = u64::from_le_bytes(ts);
        if sent_at.abs_diff(now_ms) > self.max_skew.as_millis() as u64 {
            return Err(Rejected::Stale);
        }
        Ok(&signed[HEADER_LEN..])
    }
}

/// The chitchat transport: UDP + HMAC. See the module docs.
pub struct HmacUdpTransport {
    auth: GossipAuth,
    prebound: Mutex<Option<UdpSocket>>,
    rejected: Arc<AtomicU64>,
    filter: Option<Arc<dyn PeerFilter>>,
}

impl HmacUdpTransport {
    /// A transport that binds the address chitchat asks for.
    pub fn new(auth: GossipAuth) -> HmacUdpTransport {
        HmacUdpTransport {
            auth,
            prebound: Mutex::new(None),
            rejected: Arc::default(),
            filter: None,
        }
    }

    /// A transport whose first `open` uses `socket`, already bound (so that
    /// an ephemeral port is known before chitchat starts and can be
    /// advertised).
    pub fn with_socket(auth: GossipAuth, socket: UdpSocket) -> HmacUdpTransport {
        HmacUdpTransport {
            prebound: Mutex::new(Some(socket)),
            ..HmacUdpTransport::new(auth)
        }
    }

    /// Installs a [`PeerFilter`].
    pub fn with_filter(mut self, filter: Arc<dyn PeerFilter>) -> HmacUdpTransport {
        self.filter = Some(filter);
        self
    }

    /// Datagrams dropped so far by the sockets of this transport.
    pub fn rejected_counter(&self) -> Arc<AtomicU64> {
        self.rejected.clone()
    }
}

#[async_trait]
impl Transport for HmacUdpTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let prebound = self.prebound.lock().take();
        let public = match prebound {
            Some(socket) => socket,
            None => UdpSocket::bind(listen_addr)
                .await
                .with_context(|| format!("failed to bind {listen_addr}/UDP for gossip"))?,
        };
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let codec = CodecSocket::open(loopback).await?;
        let codec_addr = codec.local_addr()?;
        let tap = UdpSocket::bind(loopback).await.context("failed to bind gossip relay")?;
        let tap_addr = tap.local_addr()?;
        Ok(Box::new(HmacUdpSocket {
            auth: self.auth.clone(),
            public,
            codec,
            codec_addr,
            tap,
            tap_addr,
            buf_recv: vec![0; MAX_DATAGRAM + 1].into_boxed_slice(),
            buf_tap: vec![0; MAX_DATAGRAM + 1].into_boxed_slice(),
            buf_send: Vec::with_capacity(MAX_DATAGRAM),
            pending: None,
            rejected: self.rejected.clone(),
            filter: self.filter.clone(),
        }))
    }
}

/// A datagram handed to the codec, waiting to be decoded.
struct Pending {
    from: SocketAddr,
    wire_len: usize,
    deadline: Instant,
}

struct HmacUdpSocket {
    auth: GossipAuth,
    public: UdpSocket,
    codec: CodecSocket,
    codec_addr: SocketAddr,
    tap: UdpSocket,
    tap_addr: SocketAddr,
    buf_recv: Box<[u8]>,
    buf_tap: Box<[u8]>,
    buf_send: Vec<u8>,
    /// Kept across calls so that `recv` stays cancellation-safe (chitchat
    /// polls it in a `select!`).
    pending: Option<Pending>,
    rejected: Arc<AtomicU64>,
    filter: Option<Arc<dyn PeerFilter>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl HmacUdpSocket {
    fn reject(&self, reason: &'static str, from: SocketAddr) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("tollgate_gossip_rejected_total", "reason" => reason).increment(1);
        tracing::debug!(%from, reason, "gossip datagram dropped");
    }

    fn allowed(&self, peer: SocketAddr) -> bool {
        self.filter.as_ref().is_none_or(|f| f.allow(peer))
    }

    /// Serialises `envelope` through the codec → tap relay into `buf_tap`;
    /// returns the payload length.
    async fn encode(&mut self, envelope: ChitchatEnvelope) -> anyhow::Result<usize> {
        // Drop anything stale in the tap (a send cancelled mid-way).
        while self.tap.try_recv_from(&mut self.buf_tap).is_ok() {}
        self.codec.send(self.tap_addr, envelope).await?;
        let deadline = Instant::now() + RELAY_TIMEOUT;
        loop {
            let (len, from) = tokio::time::timeout_at(deadline, self.tap.recv_from(&mut self.buf_tap))
                .await
                .context("gossip relay: encoded envelope did not come back")??;
            if from == self.codec_addr {
                return Ok(len);
            }
            self.reject("relay_intruder", from);
        }
    }
}

#[async_trait]
impl Socket for HmacUdpSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.public.local_addr()?)
    }

    async fn send(&mut self, to: SocketAddr, envelope: ChitchatEnvelope) -> anyhow::Result<SendOutcome> {
        let len = self.encode(envelope).await?;
        self.buf_send.clear();
        self.auth.seal(&self.buf_tap[..len], now_ms(), &mut self.buf_send);
        let num_bytes_sent = self.buf_send.len();
        if num_bytes_sent > MAX_DATAGRAM {
            // chitchat sizes its deltas for a bare UDP datagram, so a payload
            // within 41 bytes of the limit no longer fits once sealed. Our
            // state is a few keys per node, far below this.
            metrics::counter!("tollgate_gossip_oversize_total").increment(1);
            anyhow::bail!("sealed gossip datagram of {num_bytes_sent} bytes exceeds the UDP limit");
        }
        if self.allowed(to) {
            self.public.send_to(&self.buf_send, to).await.context("gossip send")?;
        }
        Ok(SendOutcome { num_bytes_sent })
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            if let Some(pending) = &self.pending {
                let deadline = pending.deadline;
                match tokio::time::timeout_at(deadline, self.codec.recv()).await {
                    Ok(Ok(outcome)) if outcome.from_addr == self.tap_addr => {
                        let Some(pending) = self.pending.take() else { continue };
                        return Ok(RecvOutcome {
                            from_addr: pending.from,
                            envelope: outcome.envelope,
                            num_bytes_received: pending.wire_len,
                        });
                    }
                    Ok(Ok(outcome)) => self.reject("relay_intruder", outcome.from_addr),
                    Ok(Err(err)) => return Err(err),
                    Err(_elapsed) => {
                        let from = pending.from;
                        self.pending = None;
                        self.reject("undecodable", from);
                    }
                }
                continue;
            }
            let (len, from) = match self.public.recv_from(&mut self.buf_recv).await {
                Ok(received) => received,
                Err(err) if is_transient(&err) => continue,
                Err(err) => return Err(err).context("fatal gossip recv error"),
            };
            if !self.allowed(from) {
                continue;
            }
            let payload = match self.auth.open(&self.buf_recv[..len], now_ms()) {
                Ok(payload) => payload,
                Err(reason) => {
                    self.reject(reason.label(), from);
                    continue;
                }
            };
            self.pending = Some(Pending {
                from,
                wire_len: len,
                deadline: Instant::now() + RELAY_TIMEOUT,
            });
            self.tap
                .send_to(payload, self.codec_addr)
                .await
                .context("gossip relay send")?;
        }
    }
}

fn is_transient(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        err.kind(),
        ConnectionReset | ConnectionRefused | OutOfMemory | WouldBlock | Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(secret: &str) -> GossipAuth {
        GossipAuth::new(&ClusterSecret::new(secret).unwrap())
    }

    #[test]
    fn seal_then_open_gives_the_payload_back() {
        let a = auth("0123456789abcdef-secret");
        let mut out = Vec::new();
        a.seal(b"hello", 1_000_000, &mut out);
        assert_eq!(out.len(), 5 + HEADER_LEN + TAG_LEN);
        assert_eq!(a.open(&out, 1_000_500), Ok(&b"hello"[..]));
    }

    #[test]
    fn tampered_wrong_key_short_and_stale_datagrams_are_rejected() {
        let a = auth("0123456789abcdef-secret");
        let mut out = Vec::new();
        a.seal(b"hello", 1_000_000, &mut out);
        let other = auth("another-secret-of-16-bytes");
        assert_eq!(other.open(&out, 1_000_000), Err(Rejected::BadTag));
        for i in 0..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0x01;
            assert!(a.open(&bad, 1_000_000).is_err(), "flip at byte {i} accepted");
        }
        assert_eq!(a.open(&out[..40], 1_000_000), Err(Rejected::TooShort));
        assert_eq!(a.open(&out, 1_000_000 + 61_000), Err(Rejected::Stale));
        assert_eq!(a.open(&out, 1_000_000 - 61_000), Err(Rejected::Stale));
        assert_eq!(a.open(b"", 0), Err(Rejected::TooShort));
    }
}
