//! Connection handshake: HMAC challenge–response in both directions.
//!
//! ```text
//! server → client   MAGIC (8) ‖ server_nonce (32)
//! client → server   client_nonce (32) ‖ HMAC(k, "client" ‖ server_nonce ‖ client_nonce ‖ "tollgate-rpc-v1")
//! server → client   ACCEPT (1) ‖ HMAC(k, "server" ‖ server_nonce ‖ client_nonce ‖ "tollgate-rpc-v1")
//!              or   REJECT (1), then close
//! k = HMAC-SHA256(cluster_secret, "tollgate-rpc-v1")
//! ```
//!
//! The server speaks first with a fresh random nonce, so a recorded client
//! answer is useless on another connection; the client's nonce does the same
//! for the server's proof, and the role prefix stops a reflected MAC being
//! accepted in the other direction. MACs are compared in constant time.
//! Messages have fixed sizes and are read with `read_exact` on the raw
//! stream, so nothing is buffered past the handshake and a peer cannot make
//! us allocate. Afterwards frames flow unauthenticated on the now trusted
//! connection (see the module docs of [`super`]).

use hmac::Mac;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::cluster::secret::{DerivedKey, HmacSha256, RPC_LABEL};

const MAGIC: [u8; 8] = *b"TGRPC\0\0\x01";
const NONCE_LEN: usize = 32;
const MAC_LEN: usize = 32;
const ACCEPT: u8 = 0xAC;
const REJECT: u8 = 0x5E;

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("handshake i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The server's greeting is not ours: not a Tollgate RPC endpoint.
    #[error("peer is not a tollgate rpc endpoint")]
    BadMagic,
    /// The peer's MAC is wrong: it does not know the secret.
    #[error("peer failed to prove it knows the cluster secret")]
    BadProof,
    /// The server refused our proof (we do not share its secret).
    #[error("peer rejected our proof")]
    Rejected,
}

impl HandshakeError {
    /// True when the failure is about the secret rather than the network.
    pub fn is_auth(&self) -> bool {
        !matches!(self, HandshakeError::Io(_))
    }

    pub(crate) fn label(&self) -> &'static str {
        match self {
            HandshakeError::Io(_) => "io",
            HandshakeError::BadMagic => "bad_magic",
            HandshakeError::BadProof => "bad_proof",
            HandshakeError::Rejected => "rejected",
        }
    }
}

fn proof(key: &DerivedKey, role: &[u8], server_nonce: &[u8], client_nonce: &[u8]) -> HmacSha256 {
    let mut mac = key.mac();
    mac.update(role);
    mac.update(server_nonce);
    mac.update(client_nonce);
    mac.update(RPC_LABEL);
    mac
}

/// The server's side. On `BadProof` the peer has been told `REJECT`.
pub async fn server_handshake<S>(io: &mut S, key: &DerivedKey) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let server_nonce: [u8; NONCE_LEN] = rand::random();
    let mut hello = [0u8; MAGIC.len() + NONCE_LEN];
    hello[..MAGIC.len()].copy_from_slice(&MAGIC);
    hello[MAGIC.len()..].copy_from_slice(&server_nonce);
    io.write_all(&hello).await?;
    io.flush().await?;

    let mut answer = [0u8; NONCE_LEN + MAC_LEN];
    io.read_exact(&mut answer).await?;
    let (client_nonce, client_mac) = answer.split_at(NONCE_LEN);
    if proof(key, b"client", &server_nonce, client_nonce)
        .verify_slice(client_mac)
        .is_err()
    {
        // Best effort: the peer learns it was refused; nothing else.
        let _ = io.write_all(&[REJECT]).await;
        let _ = io.flush().await;
        return Err(HandshakeError::BadProof);
    }
    let mut accept = [0u8; 1 + MAC_LEN];
    accept[0] = ACCEPT;
    accept[1..].copy_from_slice(
        &proof(key, b"server", &server_nonce, client_nonce)
            .finalize()
            .into_bytes(),
    );
    io.write_all(&accept).await?;
    io.flush().await?;
    Ok(())
}

/// The client's side.
pub async fn client_handshake<S>(io: &mut S, key: &DerivedKey) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hello = [0u8; MAGIC.len() + NONCE_LEN];
    io.read_exact(&mut hello).await?;
    let (magic, server_nonce) = hello.split_at(MAGIC.len());
    if magic != MAGIC {
        return Err(HandshakeError::BadMagic);
    }
    let client_nonce: [u8; NONCE_LEN] = rand::random();
    let mut answer = [0u8; NONCE_LEN + MAC_LEN];
    answer[..NONCE_LEN].copy_from_slice(&client_nonce);
    answer[NONCE_LEN..].copy_from_slice(
        &proof(key, b"client", server_nonce, &client_nonce)
            .finalize()
            .into_bytes(),
    );
    io.write_all(&answer).await?;
    io.flush().await?;

    let mut verdict = [0u8; 1];
    io.read_exact(&mut verdict).await?;
    if verdict[0] != ACCEPT {
        return Err(HandshakeError::Rejected);
    }
    let mut server_mac = [0u8; MAC_LEN];
    io.read_exact(&mut server_mac).await?;
    proof(key, b"server", server_nonce, &client_nonce)
        .verify_slice(&server_mac)
        .map_err(|_| HandshakeError::BadProof)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterSecret;

    fn key(s: &str) -> DerivedKey {
        ClusterSecret::new(s).unwrap().derive(RPC_LABEL)
    }

    async fn run(
        server_key: DerivedKey,
        client_key: DerivedKey,
    ) -> (Result<(), HandshakeError>, Result<(), HandshakeError>) {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let server = tokio::spawn(async move { server_handshake(&mut a, &server_key).await });
        let client = client_handshake(&mut b, &client_key).await;
        (server.await.unwrap(), client)
    }

    #[tokio::test]
    async fn same_secret_succeeds_both_ways() {
        let (s, c) = run(key("the-cluster-secret"), key("the-cluster-secret")).await;
        assert!(s.is_ok() && c.is_ok(), "{s:?} {c:?}");
    }

    #[tokio::test]
    async fn wrong_secret_is_rejected_on_both_sides() {
        let (s, c) = run(key("the-cluster-secret"), key("not-the-cluster-secret")).await;
        assert!(matches!(s, Err(HandshakeError::BadProof)), "{s:?}");
        assert!(matches!(c, Err(HandshakeError::Rejected)), "{c:?}");
        assert!(c.unwrap_err().is_auth());
    }

    #[tokio::test]
    async fn a_server_without_the_secret_cannot_fake_acceptance() {
        // An impostor server that accepts anything but cannot compute the proof.
        let (mut a, mut b) = tokio::io::duplex(1024);
        let impostor = tokio::spawn(async move {
            let mut hello = MAGIC.to_vec();
            hello.extend_from_slice(&[7u8; NONCE_LEN]);
            a.write_all(&hello).await.unwrap();
            let mut answer = [0u8; NONCE_LEN + MAC_LEN];
            a.read_exact(&mut answer).await.unwrap();
            a.write_all(&[ACCEPT]).await.unwrap();
            a.write_all(&answer[NONCE_LEN..]).await.unwrap(); // reflect the client's MAC
            a
        });
        let c = client_handshake(&mut b, &key("the-cluster-secret")).await;
        assert!(matches!(c, Err(HandshakeError::BadProof)), "{c:?}");
        drop(impostor.await);
    }

    #[tokio::test]
    async fn a_non_tollgate_greeting_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let c = client_handshake(&mut b, &key("the-cluster-secret")).await;
        assert!(matches!(c, Err(HandshakeError::BadMagic)), "{c:?}");
    }
}
