//! Connections a slow or hostile client holds: half-sent headers, silent
//! sockets, bodies that never finish. Each is closed in bounded time, the
//! node keeps answering meanwhile, and a shutdown is never stalled by one.
//!
//! The deadlines below are bounds ("closed within 30 s"), never speed
//! measurements.

mod common;

use common::{Backend, TestDb, TestNode};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate::config::HttpConfig;

/// Issue 8: a half-sent request is closed within this.
const CLOSED_WITHIN: Duration = Duration::from_secs(30);

const HALF_A_HEADER: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: tollgate\r\nX-Slow: ";

fn addr(n: &TestNode) -> String {
    n.base.trim_start_matches("http://").to_string()
}

async fn connect(n: &TestNode) -> TcpStream {
    TcpStream::connect(addr(n)).await.expect("connect")
}

/// Reads until the server closes the connection (EOF or reset); panics if
/// it is still open after [`CLOSED_WITHIN`]. Returns what was read.
async fn closed_by_server(mut stream: TcpStream) -> Vec<u8> {
    let mut read = Vec::new();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(CLOSED_WITHIN, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server kept a slow connection open past {CLOSED_WITHIN:?}"
    );
    read
}

#[test]
fn the_default_header_timeout_closes_half_sent_requests_within_30_s() {
    assert!(HttpConfig::default().header_read_timeout() <= CLOSED_WITHIN);
}

/// Acceptance 5: 50 connections that send half a header are all closed
/// (here with a 1 s header timeout, for speed), and the node answers other
/// clients meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_half_sent_requests_are_closed_and_the_node_keeps_answering() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let n = TestNode::start_with(&db, |c| {
        c.http.header_read_timeout_s = 1;
        c.http.keep_alive_timeout_s = 1;
    })
    .await;
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut stream = connect(&n).await;
        stream.write_all(HALF_A_HEADER).await.expect("half a header");
        slow.push(stream);
    }
    for _ in 0..5 {
        let reply = n.get("/healthz", None).await;
        assert_eq!(reply.status, 200, "the node stops answering under 50 slow clients");
        let check = n.check(serde_json::json!({"user_id": "u1"})).await;
        assert_eq!(check.status, 200, "{}", check.json);
    }
    let closed = futures::future::join_all(slow.into_iter().map(closed_by_server)).await;
    for answer in closed {
        // Closed silently, or after a 408; never a real answer.
        let text = String::from_utf8_lossy(&answer);
        assert!(answer.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    }
    // A connection that sends nothing at all is closed too.
    closed_by_server(connect(&n).await).await;
    assert_eq!(n.get("/healthz", None).await.status, 200);
    n.stop().await;
}

/// A request whose handler runs past --request-timeout-s gets a JSON 503;
/// here the "handler" waits for a body the client never finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_body_gets_a_timeout_answer() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let n = TestNode::start_with(&db, |c| c.http.request_timeout_s = 1).await;
    let mut stream = connect(&n).await;
    let head = format!(
        "POST /v1/check HTTP/1.1\r\nHost: tollgate\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"user_id\"",
        common::ADMIN
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let answer = closed_by_server(stream).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.to_ascii_lowercase().contains("retry-after: 1"), "{text}");
    assert!(text.contains("\"error\":\"timeout\""), "{text}");
    assert!(text.contains("temporarily unavailable, retry"), "{text}");
    n.stop().await;
}

/// Shutdown with slow clients connected completes: half-sent headers,
/// silent sockets, an idle keep-alive connection and a body that never
/// finishes (a request "in flight") are all closed, the last one once
/// --shutdown-grace-s is over. Timeouts are long here so that only the
/// shutdown can close them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_not_stalled_by_slow_clients() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let n = TestNode::start_with(&db, |c| {
        c.http.header_read_timeout_s = 300;
        c.http.keep_alive_timeout_s = 300;
        c.http.request_timeout_s = 600;
        c.http.shutdown_grace_s = 1;
    })
    .await;
    let mut slow = Vec::new();
    for _ in 0..5 {
        let mut stream = connect(&n).await;
        stream.write_all(HALF_A_HEADER).await.expect("half a header");
        slow.push(stream);
        slow.push(connect(&n).await);
    }
    let mut kept_alive = connect(&n).await;
    kept_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: tollgate\r\n\r\n")
        .await
        .expect("request");
    let mut buf = [0u8; 512];
    let got = kept_alive.read(&mut buf).await.expect("answer");
    assert!(String::from_utf8_lossy(&buf[..got]).starts_with("HTTP/1.1 200"));
    slow.push(kept_alive);
    let mut in_flight = connect(&n).await;
    let head = format!(
        "POST /v1/check HTTP/1.1\r\nHost: tollgate\r\nAuthorization: Bearer {}\r\nContent-Length: 100\r\n\r\n{{",
        common::ADMIN
    );
    in_flight.write_all(head.as_bytes()).await.expect("head");
    slow.push(in_flight);
    // Let the server see every connection before it is told to stop.
    assert_eq!(n.get("/healthz", None).await.status, 200);

    let stopped = tokio::time::timeout(CLOSED_WITHIN, n.stop()).await;
    assert!(stopped.is_ok(), "shutdown stalled on slow clients");
    for stream in slow {
        closed_by_server(stream).await;
    }
}

/// Beyond --max-connections a new connection is not accepted: it waits in
/// the kernel's backlog, unanswered, until an open one closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_cap_connections_wait_for_a_free_slot() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let n = TestNode::start_with(&db, |c| {
        c.http.max_connections = 2;
        c.http.header_read_timeout_s = 300;
        c.http.keep_alive_timeout_s = 300;
    })
    .await;
    let first = connect(&n).await;
    let second = connect(&n).await;
    let mut waiting = connect(&n).await;
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: tollgate\r\n\r\n")
        .await
        .expect("request");
    let mut buf = [0u8; 512];
    // Not a speed measure: with the cap working no answer ever comes
    // while both slots are held.
    let early = tokio::time::timeout(Duration::from_millis(500), waiting.read(&mut buf)).await;
    assert!(early.is_err(), "a third connection was served past a cap of 2");
    drop(first);
    let got = tokio::time::timeout(CLOSED_WITHIN, waiting.read(&mut buf))
        .await
        .expect("served once a slot freed")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..got]).starts_with("HTTP/1.1 200"));
    drop((second, waiting));
    n.stop().await;
}

/// An idle keep-alive connection is closed after --keep-alive-timeout-s
/// even when the header timeout is much longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let n = TestNode::start_with(&db, |c| {
        c.http.header_read_timeout_s = 300;
        c.http.keep_alive_timeout_s = 1;
    })
    .await;
    let mut idle = connect(&n).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: tollgate\r\n\r\n")
        .await
        .expect("request");
    let answer = closed_by_server(idle).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    n.stop().await;
}
