//! The floor: a bare axum JSON echo in its own process.

use crate::ECHO_LISTEN_ENV;
use anyhow::{Context, Result};
use axum::Json;
use axum::routing::{get, post};
use std::net::SocketAddr;

pub fn echo_main() -> Result<()> {
    let listen: SocketAddr = std::env::var(ECHO_LISTEN_ENV)
        .context("TOLLGATE_BENCH_ECHO_LISTEN is not set")?
        .parse()
        .context("TOLLGATE_BENCH_ECHO_LISTEN is not an address")?;
    // Same runtime shape as `tollgate serve`: multi-thread, one worker per CPU.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let app = axum::Router::new()
            .route("/echo", post(echo))
            .route("/healthz", get(|| async { Json(serde_json::json!({"status": "ok"})) }));
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        axum::serve(listener, app).with_graceful_shutdown(terminated()).await?;
        Ok(())
    })
}

async fn echo(Json(body): Json<serde_json::Value>) -> Json<serde_json::Value> {
    Json(body)
}

async fn terminated() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
