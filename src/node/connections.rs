//! The HTTP/1 accept loop: every connection bounded in time and number.
//!
//! `axum::serve` runs hyper without a timer, so hyper's header read timeout
//! is off and a client that sends half a request header holds its socket
//! forever (and stalls a graceful shutdown that waits for it). This loop
//! drives hyper itself:
//!
//! - **Header read timeout** (hyper's, with a Tokio timer): counted from
//!   when the connection waits for a request head, i.e. from accept or
//!   from the end of the previous response.
//! - **Keep-alive timeout**: a connection on which no byte moved for that
//!   long is asked to close; hyper answers a request in flight first.
//! - **Request timeout**: [`RequestTimeout`] around the app.
//! - **Connection cap**: a permit per connection, taken *before* `accept`,
//!   so beyond the cap new connections wait in the kernel's backlog
//!   instead of being accepted and dropped.
//! - **Graceful shutdown**: stop accepting, let in-flight requests finish
//!   (idle connections close at once), and after a bounded grace drop
//!   whatever is left.
//!
//! The hot path gains one timer registration per request (the deadline)
//! and one relaxed atomic add per socket read or write (the activity
//! counter); the per-connection watchdog wakes a few times per keep-alive
//! period, not per request.

use crate::config::HttpConfig;
use crate::http::timeout::RequestTimeout;
use axum::Extension;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::Layer;

/// The keep-alive watchdog looks this many times per period: a silent
/// connection closes between 1 and 1¼ periods after its last byte.
const WATCHDOG_TICKS_PER_PERIOD: u32 = 4;

/// After the grace, how long dropped connections get to be gone (their
/// tasks only need to be polled once).
const ABORT_WAIT: Duration = Duration::from_secs(5);

/// How long to back off when `accept` fails (out of file descriptors,
/// usually): retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Where the server is in its life; connections watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Stop accepting; finish in-flight requests, close idle connections.
    Draining,
    /// The grace is over: drop every connection.
    Closing,
}

/// The per-connection settings, built once.
struct Settings {
    http1: http1::Builder,
    keep_alive: Duration,
    request_timeout: Duration,
    max_connections: u32,
    grace: Duration,
}

/// One listener and the app it serves.
pub struct Endpoint {
    pub listener: TcpListener,
    pub app: axum::Router,
}

/// Serves every endpoint until `shutdown` completes, then shuts down as
/// the module docs say. Returns once every connection is gone.
pub async fn serve(config: &HttpConfig, endpoints: Vec<Endpoint>, shutdown: impl Future<Output = ()>) {
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout());
    let settings = Arc::new(Settings {
        http1,
        keep_alive: config.keep_alive_timeout(),
        request_timeout: config.request_timeout(),
        max_connections: config.max_connections,
        grace: config.shutdown_grace(),
    });
    let (phase, watch_phase) = watch::channel(Phase::Serving);
    let mut caps = Vec::with_capacity(endpoints.len());
    let mut accepting = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        // Each listener has its own cap: a flood on the public port must
        // not lock operators out of the ops port.
        let cap = Arc::new(Semaphore::new(settings.max_connections as usize));
        caps.push(cap.clone());
        accepting.push(tokio::spawn(accept_loop(
            endpoint,
            settings.clone(),
            cap,
            watch_phase.clone(),
        )));
    }
    shutdown.await;

    let _ = phase.send(Phase::Draining);
    for task in accepting {
        // The loops only return; a panic there is already logged.
        let _ = task.await;
    }
    let all_closed = async {
        for cap in &caps {
            // Every permit back means every connection task has ended.
            let _ = cap.acquire_many(settings.max_connections).await;
        }
    };
    if tokio::time::timeout(settings.grace, all_closed).await.is_err() {
        let open: usize = caps
            .iter()
            .map(|c| settings.max_connections as usize - c.available_permits())
            .sum();
        tracing::warn!(open, grace = ?settings.grace, "shutdown grace over: dropping the remaining connections");
        let _ = phase.send(Phase::Closing);
        let all_gone = async {
            for cap in &caps {
                let _ = cap.acquire_many(settings.max_connections).await;
            }
        };
        if tokio::time::timeout(ABORT_WAIT, all_gone).await.is_err() {
            tracing::warn!("some connections did not close; leaving them to the runtime's end");
        }
    }
}

async fn accept_loop(
    endpoint: Endpoint,
    settings: Arc<Settings>,
    cap: Arc<Semaphore>,
    mut phase: watch::Receiver<Phase>,
) {
    let Endpoint { listener, app } = endpoint;
    loop {
        let permit = tokio::select! {
            permit = cap.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return, // closed: never happens, the semaphore lives here
            },
            _ = phase.changed() => return,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; backing off");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = phase.changed() => return,
        };
        let service = RequestTimeout::new(
            Extension(ConnectInfo(remote)).layer(app.clone()),
            settings.request_timeout,
        );
        let settings = settings.clone();
        let phase = phase.clone();
        tokio::spawn(async move {
            serve_connection(stream, remote, service, &settings, phase).await;
            drop(permit);
        });
    }
}

async fn serve_connection<S>(
    stream: TcpStream,
    remote: SocketAddr,
    service: S,
    settings: &Settings,
    mut phase: watch::Receiver<Phase>,
) where
    S: tower::Service<
            axum::http::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let activity = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Counted {
        stream,
        activity: activity.clone(),
    });
    let conn = settings.http1.serve_connection(io, TowerToHyperService::new(service));
    tokio::pin!(conn);
    let mut watchdog = tokio::time::interval(settings.keep_alive / WATCHDOG_TICKS_PER_PERIOD);
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut last_seen, mut silent_ticks) = (0u64, 0u32);
    let mut closing = false;
    // A connection accepted just as draining began must still close.
    if *phase.borrow_and_update() != Phase::Serving {
        conn.as_mut().graceful_shutdown();
        closing = true;
    }
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    // Timeouts, resets, malformed requests: the client's
                    // doing, not worth more than debug.
                    tracing::debug!(%remote, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = watchdog.tick(), if !closing => {
                let seen = activity.load(Ordering::Relaxed);
                if seen == last_seen {
                    silent_ticks += 1;
                    if silent_ticks >= WATCHDOG_TICKS_PER_PERIOD {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                } else {
                    (last_seen, silent_ticks) = (seen, 0);
                }
            }
            changed = phase.changed() => {
                let now = if changed.is_ok() { *phase.borrow_and_update() } else { Phase::Closing };
                match now {
                    Phase::Serving => {}
                    Phase::Draining => {
                        if !closing {
                            conn.as_mut().graceful_shutdown();
                            closing = true;
                        }
                    }
                    Phase::Closing => return,
                }
            }
        }
    }
}

/// A socket that counts its reads and writes for the keep-alive watchdog.
struct Counted {
    stream: TcpStream,
    activity: Arc<AtomicU64>,
}

impl Counted {
    fn touch(&self) {
        self.activity.fetch_add(1, Ordering::Relaxed);
    }
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if polled.is_ready() {
            self.touch();
        }
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if polled.is_ready() {
            self.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if polled.is_ready() {
            self.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
