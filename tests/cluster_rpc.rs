//! The internal RPC on real loopback sockets: round trips, multiplexing,
//! authentication, hostile peers, server death and reconnection, timeouts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate::cluster::rpc::{
    ClientConfig, Handler, PeerPool, RpcClient, RpcError, RpcServer, ServerConfig, frame, handler_fn,
};
use tollgate::cluster::{BlockList, ClusterSecret, PeerFilter};

const SECRET: &str = "cluster-rpc-test-secret";
/// Bound on every wait in these tests; generous, never a performance claim.
const PATIENCE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Req {
    Echo(String),
    Add(u64, u64),
    Sleep(u64),
    Fail(String),
    Panic,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Resp {
    Echo(String),
    Sum(u64),
    Slept,
}

#[derive(Default)]
struct TestHandler {
    calls: AtomicU64,
}

#[async_trait]
impl Handler<Req, Resp> for TestHandler {
    async fn handle(&self, req: Req) -> Result<Resp, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match req {
            Req::Echo(s) => Ok(Resp::Echo(s)),
            Req::Add(a, b) => Ok(Resp::Sum(a + b)),
            Req::Sleep(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(Resp::Slept)
            }
            Req::Fail(msg) => Err(msg),
            Req::Panic => panic!("handler asked to panic"),
        }
    }
}

fn secret() -> ClusterSecret {
    ClusterSecret::new(SECRET).unwrap()
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn server_with(cfg: ServerConfig) -> (RpcServer, Arc<TestHandler>) {
    let handler = Arc::new(TestHandler::default());
    let server = RpcServer::bind_with(
        loopback(),
        &secret(),
        handler.clone() as Arc<dyn Handler<Req, Resp>>,
        cfg,
    )
    .await
    .unwrap();
    (server, handler)
}

async fn server() -> (RpcServer, Arc<TestHandler>) {
    server_with(ServerConfig::default()).await
}

fn client(addr: SocketAddr) -> RpcClient<Req, Resp> {
    RpcClient::new(addr, &secret(), ClientConfig::default())
}

#[tokio::test]
async fn round_trip_and_remote_errors() {
    let (server, handler) = server().await;
    let c = client(server.local_addr());
    assert_eq!(
        c.call(&Req::Echo("héllo".into()), PATIENCE).await.unwrap(),
        Resp::Echo("héllo".into())
    );
    assert_eq!(c.call(&Req::Add(2, 40), PATIENCE).await.unwrap(), Resp::Sum(42));

    let err = c.call(&Req::Fail("no budget".into()), PATIENCE).await.unwrap_err();
    assert!(matches!(&err, RpcError::Remote(m) if m == "no budget"), "{err:?}");
    assert!(!err.is_retryable());

    let err = c.call(&Req::Panic, PATIENCE).await.unwrap_err();
    assert!(matches!(&err, RpcError::Remote(m) if m.contains("panicked")), "{err:?}");
    // The connection survives both.
    assert_eq!(c.call(&Req::Add(1, 1), PATIENCE).await.unwrap(), Resp::Sum(2));
    assert_eq!(c.stats().connects.load(Ordering::Relaxed), 1);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 5);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_calls_share_one_connection() {
    let (server, handler) = server().await;
    let c = Arc::new(client(server.local_addr()));
    let calls: Vec<_> = (0..1000u64)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { (i, c.call(&Req::Add(i, 1_000_000 * i), PATIENCE).await) })
        })
        .collect();
    for call in calls {
        let (i, result) = call.await.unwrap();
        assert_eq!(
            result.unwrap(),
            Resp::Sum(1_000_001 * i),
            "call {i} got another call's reply"
        );
    }
    assert_eq!(c.stats().connects.load(Ordering::Relaxed), 1);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 1000);
    let flushes = c.stats().flushes.load(Ordering::Relaxed);
    let replies = server.stats().flushes.load(Ordering::Relaxed);
    eprintln!("1000 concurrent calls: {flushes} client flushes, {replies} server reply flushes");
    assert!(flushes < 1000, "no two calls were ever written together");
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_secret_is_refused_and_never_reaches_the_handler() {
    let (server, handler) = server().await;
    let intruder: RpcClient<Req, Resp> = RpcClient::new(
        server.local_addr(),
        &ClusterSecret::new("not-the-cluster-secret").unwrap(),
        ClientConfig::default(),
    );
    for _ in 0..3 {
        let err = intruder
            .call(&Req::Echo("let me in".into()), PATIENCE)
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::AuthFailed(_)), "{err:?}");
        assert!(!err.is_retryable() && err.was_not_sent());
    }
    assert_eq!(handler.calls.load(Ordering::SeqCst), 0);
    assert!(server.stats().handshake_failures.load(Ordering::Relaxed) >= 3);
    // The right secret still works.
    assert_eq!(
        client(server.local_addr())
            .call(&Req::Add(1, 2), PATIENCE)
            .await
            .unwrap(),
        Resp::Sum(3)
    );
    server.shutdown().await;
}

/// Reads until EOF or error; true when the server closed the connection.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(PATIENCE, read_all).await.unwrap_or(false)
}

#[tokio::test]
async fn raw_clients_speaking_garbage_or_nothing_are_disconnected() {
    let cfg = ServerConfig {
        handshake_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let (server, handler) = server_with(cfg).await;
    let addr = server.local_addr();

    // Talks first, with an HTTP request.
    let mut talker = TcpStream::connect(addr).await.unwrap();
    talker
        .write_all(b"GET /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"entity\": \"user:u1\"}\r\n")
        .await
        .unwrap();
    assert!(
        closed_by_server(&mut talker).await,
        "garbage sender was not disconnected"
    );

    // Reads the greeting, answers random bytes.
    let mut guesser = TcpStream::connect(addr).await.unwrap();
    let mut hello = [0u8; 40];
    guesser.read_exact(&mut hello).await.unwrap();
    guesser.write_all(&[0x42; 64]).await.unwrap();
    assert!(closed_by_server(&mut guesser).await, "bad proof was not disconnected");

    // Says nothing: dropped after the handshake timeout.
    let mut mute = TcpStream::connect(addr).await.unwrap();
    assert!(closed_by_server(&mut mute).await, "silent peer was not disconnected");

    assert_eq!(handler.calls.load(Ordering::SeqCst), 0);
    assert!(server.stats().handshake_failures.load(Ordering::Relaxed) >= 3);
    server.shutdown().await;
}

#[tokio::test]
async fn authenticated_peer_sending_bad_frames() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_util::codec::Framed;

    let (server, handler) = server().await;
    let key = secret().derive(tollgate::cluster::secret::RPC_LABEL);
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    tollgate::cluster::rpc::auth::client_handshake(&mut stream, &key)
        .await
        .unwrap();
    let mut framed = Framed::new(stream, frame::codec());

    // A valid id with a body that is no `Req`: an error reply for that id.
    let mut bad_body = frame::encode(7, &0u8).unwrap().to_vec();
    bad_body.extend_from_slice(&[0xff, 0xff, 0xff]);
    framed.send(bytes::Bytes::from(bad_body)).await.unwrap();
    let reply = tokio::time::timeout(PATIENCE, framed.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let (id, body) = frame::split_id(&reply).unwrap();
    assert_eq!(id, 7);
    let decoded: frame::Reply<Resp> = frame::decode_body(body).unwrap();
    assert!(matches!(decoded, frame::Reply::Err(m) if m.starts_with("bad request")));

    // A length prefix beyond the 1 MiB limit: the connection is closed.
    let mut stream = framed.into_inner();
    stream.write_all(&(2u32 << 20).to_be_bytes()).await.unwrap();
    assert!(closed_by_server(&mut stream).await);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 0);
    assert_eq!(server.stats().protocol_errors.load(Ordering::Relaxed), 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_death_fails_pending_calls_and_next_call_reconnects() {
    let (server, handler) = server().await;
    let addr = server.local_addr();
    let c = Arc::new(client(addr));
    assert_eq!(c.call(&Req::Add(1, 1), PATIENCE).await.unwrap(), Resp::Sum(2));

    let stuck: Vec<_> = (0..20)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.call(&Req::Sleep(3_600_000), PATIENCE).await })
        })
        .collect();
    // Wait until every call is running in the handler, then crash the server.
    let started = tokio::time::Instant::now();
    while handler.calls.load(Ordering::SeqCst) < 21 {
        assert!(started.elapsed() < PATIENCE, "calls never reached the handler");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.abort().await;
    for call in stuck {
        let err = call.await.unwrap().unwrap_err();
        assert!(matches!(err, RpcError::ConnectionLost(_)), "{err:?}");
        assert!(err.is_retryable());
    }

    // Down: the call fails fast and retryably, without having been sent.
    let err = c.call(&Req::Add(1, 1), PATIENCE).await.unwrap_err();
    assert!(err.is_retryable() && err.was_not_sent(), "{err:?}");

    // Back on the same port: the next call reconnects by itself.
    let handler2 = Arc::new(TestHandler::default());
    let server2 = RpcServer::bind(addr, &secret(), handler2.clone() as Arc<dyn Handler<Req, Resp>>)
        .await
        .unwrap();
    assert_eq!(c.call(&Req::Add(2, 2), PATIENCE).await.unwrap(), Resp::Sum(4));
    assert_eq!(c.stats().connects.load(Ordering::Relaxed), 2);
    assert_eq!(handler2.calls.load(Ordering::SeqCst), 1);
    server2.shutdown().await;
}

#[tokio::test]
async fn call_timeout_leaves_the_connection_usable() {
    let (server, _handler) = server().await;
    let c = client(server.local_addr());
    let err = c
        .call(&Req::Sleep(5_000), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Timeout(_)), "{err:?}");
    assert!(err.is_retryable() && !err.was_not_sent());
    assert_eq!(
        c.call(&Req::Echo("still here".into()), PATIENCE).await.unwrap(),
        Resp::Echo("still here".into())
    );
    assert_eq!(c.stats().connects.load(Ordering::Relaxed), 1);
    server.abort().await;
}

#[tokio::test]
async fn graceful_shutdown_answers_running_calls_then_refuses() {
    let (server, _handler) = server().await;
    let addr = server.local_addr();
    let c = Arc::new(client(addr));
    assert_eq!(c.call(&Req::Add(0, 0), PATIENCE).await.unwrap(), Resp::Sum(0));
    let running = {
        let c = c.clone();
        tokio::spawn(async move { c.call(&Req::Sleep(300), PATIENCE).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.shutdown().await;
    assert_eq!(running.await.unwrap().unwrap(), Resp::Slept);
    let err = client(addr).call(&Req::Add(1, 1), PATIENCE).await.unwrap_err();
    assert!(err.was_not_sent(), "{err:?}");
}

#[tokio::test]
async fn peer_pool_round_robins_over_its_connections() {
    let (server, handler) = server().await;
    let pool: PeerPool<Req, Resp> = PeerPool::new(&secret(), 3, ClientConfig::default());
    for i in 0..30 {
        assert_eq!(
            pool.call(server.local_addr(), &Req::Add(i, i), PATIENCE).await.unwrap(),
            Resp::Sum(2 * i)
        );
    }
    let clients: Vec<_> = (0..3).map(|_| pool.client(server.local_addr())).collect();
    for c in &clients {
        assert_eq!(c.stats().connects.load(Ordering::Relaxed), 1);
    }
    assert!(!Arc::ptr_eq(&clients[0], &clients[1]) && !Arc::ptr_eq(&clients[1], &clients[2]));
    assert_eq!(handler.calls.load(Ordering::SeqCst), 30);
    pool.forget(server.local_addr());
    assert!(pool.peers().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn peer_filter_cuts_and_restores_calls() {
    let handler = handler_fn(|n: u32| async move { Ok::<u32, String>(n * 2) });
    let server = RpcServer::bind(loopback(), &secret(), handler).await.unwrap();
    let addr = server.local_addr();
    let blocked = Arc::new(BlockList::default());
    let cfg = ClientConfig {
        filter: Some(blocked.clone() as Arc<dyn PeerFilter>),
        ..ClientConfig::default()
    };
    let c: RpcClient<u32, u32> = RpcClient::new(addr, &secret(), cfg);
    assert_eq!(c.call(&21, PATIENCE).await.unwrap(), 42);
    blocked.block(addr);
    let err = c.call(&1, PATIENCE).await.unwrap_err();
    assert!(
        matches!(err, RpcError::Unavailable { .. }) && err.is_retryable(),
        "{err:?}"
    );
    blocked.unblock(addr);
    assert_eq!(c.call(&5, PATIENCE).await.unwrap(), 10);
    assert_eq!(c.stats().connects.load(Ordering::Relaxed), 2);
    server.shutdown().await;
}
