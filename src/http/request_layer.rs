//! The outermost layer of every request: its id, its metrics and its
//! access-log line.
//!
//! - **Request id.** A client's `X-Request-Id` is kept when it is short and
//!   plain (1–64 of `A-Za-z0-9._:-`); otherwise the node makes one. It is
//!   echoed in the response and carried in the access log, so a client's
//!   report and a node's log line meet.
//! - **Metrics.** `tollgate_http_requests_total` and
//!   `tollgate_http_request_duration_seconds` by matched route (the
//!   pattern, never the path: ids in paths would explode the series),
//!   method and status class. Handles are registered once per (route,
//!   method, class) and then only incremented.
//! - **Access log.** One `info` line per request on the `tollgate::access`
//!   target: id, method, route, status, microseconds, caller kind — never
//!   a header value or a token. Errors (4xx but 429, and 5xx) are always
//!   logged; of the rest, one in `--access-log-sample` (1 = all, 0 =
//!   none). Lines are written by the logging thread, off the request path.

use axum::extract::MatchedPath;
use axum::http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use foldhash::HashMap;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;
use tower::{Layer, Service};

/// `X-Request-Id`.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client request id kept.
const MAX_ID_LEN: usize = 64;

/// A request's id, in its extensions (for handlers that log).
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

/// Where the `Caller` extractor leaves the kind of credential it found, for
/// the access log (the principal itself never leaves the handler).
#[derive(Debug, Clone, Default)]
pub struct CallerSlot(Arc<AtomicU8>);

const CALLER_KINDS: [&str; 5] = ["-", "admin", "user", "api_key", "guest"];

impl CallerSlot {
    pub fn set(&self, kind: &str) {
        let code = CALLER_KINDS.iter().position(|k| *k == kind).unwrap_or(0);
        self.0.store(code as u8, Ordering::Relaxed);
    }

    fn get(&self) -> &'static str {
        CALLER_KINDS[usize::from(self.0.load(Ordering::Relaxed)) % CALLER_KINDS.len()]
    }
}

/// Builds [`RequestService`]s; cheap to clone.
#[derive(Clone)]
pub struct RequestLayer {
    shared: Arc<Shared>,
}

struct Shared {
    /// Log one in this many non-error requests (0: none).
    sample: u64,
    seen: AtomicU64,
    /// Request ids: a random per-process prefix and a sequence.
    id_prefix: u32,
    next_id: AtomicU64,
    handles: RwLock<HashMap<Box<str>, Arc<RouteHandles>>>,
}

impl RequestLayer {
    /// `sample`: see the module docs.
    pub fn new(sample: u64) -> RequestLayer {
        RequestLayer {
            shared: Arc::new(Shared {
                sample,
                seen: AtomicU64::new(0),
                id_prefix: rand::random(),
                next_id: AtomicU64::new(1),
                handles: RwLock::new(HashMap::default()),
            }),
        }
    }
}

impl<S> Layer<S> for RequestLayer {
    type Service = RequestService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct RequestService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B, R> Service<Request<B>> for RequestService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = RequestFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let started = Instant::now();
        let method = method_index(req.method());
        let id = match req.headers().get(&REQUEST_ID) {
            Some(given) if plain_id(given.as_bytes()) => given.clone(),
            _ => self.shared.new_id(),
        };
        // A cheap clone (the pattern is shared); absent for the fallback.
        let route = req.extensions().get::<MatchedPath>().cloned();
        let caller = CallerSlot::default();
        req.extensions_mut().insert(RequestId(id.clone()));
        req.extensions_mut().insert(caller.clone());
        RequestFuture {
            inner: self.inner.call(req),
            done: Some(Done {
                started,
                id,
                method,
                route,
                caller,
                shared: self.shared.clone(),
            }),
        }
    }
}

pin_project! {
    /// The inner future, then the bookkeeping.
    pub struct RequestFuture<F> {
        #[pin]
        inner: F,
        done: Option<Done>,
    }
}

struct Done {
    started: Instant,
    id: HeaderValue,
    method: usize,
    route: Option<MatchedPath>,
    caller: CallerSlot,
    shared: Arc<Shared>,
}

impl<F, R, E> Future for RequestFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        if let (Some(done), Ok(response)) = (this.done.take(), result.as_mut()) {
            done.finish(response);
        }
        Poll::Ready(result)
    }
}

impl Done {
    fn finish<R>(self, response: &mut Response<R>) {
        let status = response.status();
        response.headers_mut().insert(REQUEST_ID.clone(), self.id.clone());
        let elapsed = self.started.elapsed();
        let route = self.route.as_ref().map_or("unmatched", MatchedPath::as_str);
        let class = status_class(status);
        let handles = self.shared.handles(route, self.method, class);
        handles.0.increment(1);
        handles.1.record(elapsed.as_secs_f64());
        if self.shared.should_log(status) {
            tracing::info!(
                target: "tollgate::access",
                request_id = %String::from_utf8_lossy(self.id.as_bytes()),
                method = METHODS[self.method],
                route,
                status = status.as_u16(),
                micros = elapsed.as_micros() as u64,
                caller = self.caller.get(),
            );
        }
    }
}

impl Shared {
    fn new_id(&self) -> HeaderValue {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let text = format!("{:08x}{:012x}", self.id_prefix, n & 0xffff_ffff_ffff);
        // Hex digits only: always a valid header value.
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("-"))
    }

    fn should_log(&self, status: StatusCode) -> bool {
        let error = (status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS) || status.is_server_error();
        if error {
            return true;
        }
        match self.sample {
            0 => false,
            1 => true,
            n => self.seen.fetch_add(1, Ordering::Relaxed).is_multiple_of(n),
        }
    }

    /// The counter and histogram of (route, method, class), registered on
    /// first use.
    fn handles(&self, route: &str, method: usize, class: usize) -> (metrics::Counter, metrics::Histogram) {
        let by_route = {
            let map = self.handles.read().unwrap_or_else(|p| p.into_inner());
            map.get(route).cloned()
        };
        let by_route = match by_route {
            Some(h) => h,
            None => {
                let mut map = self.handles.write().unwrap_or_else(|p| p.into_inner());
                map.entry(Box::from(route))
                    .or_insert_with(|| Arc::new(RouteHandles::new(route)))
                    .clone()
            }
        };
        by_route.get(method, class)
    }
}

/// One route's series, made on first use.
struct RouteHandles {
    route: Arc<str>,
    slots: [OnceLock<(metrics::Counter, metrics::Histogram)>; METHODS.len() * CLASSES.len()],
}

impl RouteHandles {
    fn new(route: &str) -> RouteHandles {
        RouteHandles {
            route: Arc::from(route),
            slots: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    fn get(&self, method: usize, class: usize) -> (metrics::Counter, metrics::Histogram) {
        self.slots[method * CLASSES.len() + class]
            .get_or_init(|| {
                let labels = [
                    ("route", self.route.to_string()),
                    ("method", METHODS[method].to_string()),
                    ("status_class", CLASSES[class].to_string()),
                ];
                (
                    metrics::counter!("tollgate_http_requests_total", &labels),
                    metrics::histogram!("tollgate_http_request_duration_seconds", &labels),
                )
            })
            .clone()
    }
}

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "other"];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::DELETE => 3,
        Method::PATCH => 4,
        Method::HEAD => 5,
        _ => 6,
    }
}

fn status_class(status: StatusCode) -> usize {
    (usize::from(status.as_u16() / 100)).clamp(1, 5) - 1
}

/// A client id worth keeping: short, and only characters that cannot
/// break a log line or a header.
fn plain_id(id: &[u8]) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_kept_only_when_plain() {
        assert!(plain_id(b"req-123_abc:9.z"));
        assert!(!plain_id(b""));
        assert!(!plain_id(&[b'a'; 65]));
        assert!(!plain_id(b"a b"));
        assert!(!plain_id(b"a\"b"));
        assert!(!plain_id("é".as_bytes()));
    }

    #[test]
    fn status_classes() {
        assert_eq!(CLASSES[status_class(StatusCode::OK)], "2xx");
        assert_eq!(CLASSES[status_class(StatusCode::TOO_MANY_REQUESTS)], "4xx");
        assert_eq!(CLASSES[status_class(StatusCode::SERVICE_UNAVAILABLE)], "5xx");
        assert_eq!(CLASSES[status_class(StatusCode::CONTINUE)], "1xx");
    }

    #[test]
    fn made_ids_are_unique_hex() {
        let layer = RequestLayer::new(1);
        let a = layer.shared.new_id();
        let b = layer.shared.new_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 20);
        assert!(a.as_bytes().iter().all(u8::is_ascii_hexdigit));
    }

    #[test]
    fn sampling_keeps_every_error() {
        let layer = RequestLayer::new(0);
        assert!(!layer.shared.should_log(StatusCode::OK));
        assert!(!layer.shared.should_log(StatusCode::TOO_MANY_REQUESTS));
        assert!(layer.shared.should_log(StatusCode::UNAUTHORIZED));
        assert!(layer.shared.should_log(StatusCode::SERVICE_UNAVAILABLE));
        let every_third = RequestLayer::new(3);
        let logged = (0..9).filter(|_| every_third.shared.should_log(StatusCode::OK)).count();
        assert_eq!(logged, 3);
    }
}
