//! The per-request deadline: a request not answered in time gets a JSON
//! 503 `timeout` instead of holding its connection and its client forever.
//!
//! tower-http's `TimeoutLayer` answers with an empty body; this one answers
//! like every other error of the API. Its future is a named type (no box):
//! the deadline costs one timer registration per request, nothing else.

use super::error::ApiError;
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use futures_util::future::Map;
use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Timeout;
use tokio::time::error::Elapsed;

/// Wraps a service so that each call has at most `limit`.
#[derive(Debug, Clone)]
pub struct RequestTimeout<S> {
    inner: S,
    limit: Duration,
}

impl<S> RequestTimeout<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        RequestTimeout { inner, limit }
    }
}

type Outcome = Result<Result<Response, Infallible>, Elapsed>;

/// What a timed-out request hears. The handler's future is dropped; a
/// usage record already handed to the ledger may still commit, so the
/// message does not promise that nothing was recorded (retrying with the
/// same `request_id` is safe).
fn answer(outcome: Outcome) -> Result<Response, Infallible> {
    match outcome {
        Ok(answered) => answered,
        Err(_) => {
            tracing::warn!("a request exceeded --request-timeout-s");
            Ok(ApiError::unavailable("timeout").into_response())
        }
    }
}

impl<S, B> tower::Service<Request<B>> for RequestTimeout<S>
where
    S: tower::Service<Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Map<Timeout<S::Future>, fn(Outcome) -> Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        tokio::time::timeout(self.limit, self.inner.call(request)).map(answer as fn(Outcome) -> _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_slow_handler_gets_a_json_503() {
        let slow = tower::service_fn(|_: Request<()>| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, Infallible>(StatusCode::OK.into_response())
        });
        let response = RequestTimeout::new(slow, Duration::from_millis(20))
            .oneshot(Request::new(()))
            .await;
        let Ok(response) = response;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(axum::http::header::RETRY_AFTER));
    }

    #[tokio::test]
    async fn a_quick_handler_is_untouched() {
        let quick =
            tower::service_fn(|_: Request<()>| async { Ok::<_, Infallible>(StatusCode::CREATED.into_response()) });
        let Ok(response) = RequestTimeout::new(quick, Duration::from_secs(60))
            .oneshot(Request::new(()))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
}
