//! A webhook receiver on loopback that counts deliveries per `webhook-id`.
//!
//! Written by hand (HTTP/1.1 with keep-alive, `Content-Length` bodies, 200
//! to everything) so the harness needs no server framework and sees every
//! request, duplicates included, exactly as the nodes sent them.

use crate::error::{HarnessError, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Largest body the sink reads (an alert payload is well under 1 KiB).
const MAX_BODY: usize = 64 * 1024;

/// What the sink has seen so far.
#[derive(Debug, Clone, Default)]
pub struct SinkCounts {
    /// Requests per `webhook-id`.
    pub per_id: HashMap<String, u32>,
    /// Requests without a `webhook-id` header.
    pub without_id: u64,
}

impl SinkCounts {
    pub fn distinct(&self) -> usize {
        self.per_id.len()
    }

    /// Requests beyond the first for each id.
    pub fn duplicates(&self) -> u64 {
        self.per_id.values().map(|n| u64::from(n.saturating_sub(1))).sum()
    }
}

/// The running sink; stops when dropped.
pub struct WebhookSink {
    port: u16,
    counts: Arc<Mutex<SinkCounts>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WebhookSink {
    pub async fn start() -> Result<WebhookSink> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| HarnessError::io("bind the webhook sink", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| HarnessError::io("webhook sink address", e))?
            .port();
        let counts = Arc::new(Mutex::new(SinkCounts::default()));
        let shared = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counts = shared.clone();
                tokio::spawn(async move {
                    // A connection that breaks mid-request is the sender's
                    // problem (it retries); nothing was counted for it.
                    let _ = serve(stream, counts).await;
                });
            }
        });
        Ok(WebhookSink { port, counts, task })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn counts(&self) -> SinkCounts {
        match self.counts.lock() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// Serves requests on one connection until the peer closes it.
async fn serve(stream: TcpStream, counts: Arc<Mutex<SinkCounts>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut id = None;
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).await? == 0 {
                return Ok(());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                match name.trim().to_ascii_lowercase().as_str() {
                    "webhook-id" => id = Some(value.to_string()),
                    "content-length" => length = value.parse().unwrap_or(0).min(MAX_BODY),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        {
            let mut c = match counts.lock() {
                Ok(c) => c,
                Err(poisoned) => poisoned.into_inner(),
            };
            match id {
                Some(id) => *c.per_id.entry(id).or_default() += 1,
                None => c.without_id += 1,
            }
        }
        reader
            .get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_per_id_over_kept_alive_connections() {
        let sink = WebhookSink::start().await.unwrap();
        let client = reqwest::Client::new();
        for id in ["a", "b", "a"] {
            let r = client
                .post(sink.url("/hook"))
                .header("webhook-id", id)
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let r = client.post(sink.url("/hook")).body("x").send().await.unwrap();
        assert_eq!(r.status(), 200);
        let counts = sink.counts();
        assert_eq!(counts.distinct(), 2);
        assert_eq!(counts.duplicates(), 1);
        assert_eq!(counts.without_id, 1);
    }
}
