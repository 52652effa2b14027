//! Framing and encoding of RPC messages.
//!
//! A frame is a `u32` big-endian length and that many bytes
//! ([`LengthDelimitedCodec`]); a frame body is a postcard-encoded
//! [`Envelope`]. postcard writes the struct's fields in order, the `u64` id
//! first as a varint, so a receiver can read the id alone
//! ([`split_id`]) before decoding the body: the client's reader routes a
//! reply to its caller without knowing the response type, and the server
//! can answer a request whose body does not decode with an error for that
//! id instead of dropping the connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::SinkExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedWrite, LengthDelimitedCodec};

use super::RpcError;

/// Largest frame accepted or sent: 1 MiB. A longer length prefix is a
/// protocol violation that closes the connection (so a peer cannot make us
/// buffer an arbitrary amount).
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// One message: the request id (chosen by the client, echoed by the server)
/// and the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub id: u64,
    pub body: T,
}

/// The body of a reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply<R> {
    Ok(R),
    /// The handler failed, panicked, or the request did not decode.
    Err(String),
}

/// The codec of every RPC connection.
pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME_LEN)
        .big_endian()
        .length_field_length(4)
        .new_codec()
}

/// Encodes `Envelope { id, body }` into one frame body.
pub fn encode<T: Serialize>(id: u64, body: &T) -> Result<Bytes, RpcError> {
    let bytes = postcard::to_stdvec(&Envelope { id, body })?;
    if bytes.len() > MAX_FRAME_LEN {
        return Err(RpcError::Codec(format!(
            "message of {} bytes exceeds {MAX_FRAME_LEN}",
            bytes.len()
        )));
    }
    Ok(Bytes::from(bytes))
}

/// Reads the id at the front of a frame body; returns it and the rest (the
/// encoded body).
pub fn split_id(frame: &[u8]) -> Result<(u64, &[u8]), RpcError> {
    Ok(postcard::take_from_bytes::<u64>(frame)?)
}

/// Most frames fed before one flush.
const MAX_BATCH: usize = 512;

/// The writer half of a connection, shared by client and server: drains
/// `rx` and writes each frame, **coalescing**: after the first frame it keeps
/// feeding whatever is already queued (up to [`MAX_BATCH`] frames or the
/// 64 KiB buffer), under load yields once to let runnable producers add theirs, and
/// flushes once the queue is momentarily empty, so many
/// concurrent calls leave in a few `write` syscalls. Returns when every
/// sender is gone (after flushing and shutting the write side down) or on
/// the first write error. `flushes` counts flushes (for tests and stats).
pub(crate) async fn write_loop<W>(io: W, mut rx: mpsc::Receiver<Bytes>, flushes: Arc<AtomicU64>) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut sink = FramedWrite::new(io, codec());
    sink.set_backpressure_boundary(64 * 1024);
    // Whether the last batch had company: only then is waiting one
    // scheduler pass for more frames worth it. A lone call (light load)
    // goes out at once instead of queueing behind every runnable task.
    let mut busy = false;
    while let Some(frame) = rx.recv().await {
        sink.feed(frame).await?;
        let mut batch = 1;
        let mut yielded = !busy;
        while batch < MAX_BATCH {
            match rx.try_recv() {
                Ok(frame) => {
                    sink.feed(frame).await?;
                    batch += 1;
                }
                // Queue momentarily empty: under load, give the producers
                // that are already runnable one scheduler pass to add their
                // frames, then flush.
                Err(_) if !yielded => {
                    yielded = true;
                    tokio::task::yield_now().await;
                }
                Err(_) => break,
            }
        }
        busy = batch > 1;
        SinkExt::<Bytes>::flush(&mut sink).await?;
        flushes.fetch_add(1, Ordering::Relaxed);
    }
    SinkExt::<Bytes>::close(&mut sink).await
}

/// Decodes a body (what [`split_id`] left), refusing trailing bytes.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, RpcError> {
    let (value, rest) = postcard::take_from_bytes::<T>(body)?;
    if !rest.is_empty() {
        return Err(RpcError::Codec(format!("{} trailing bytes", rest.len())));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Msg {
        Ping(u32),
        Text { s: String, v: Vec<i64> },
    }

    #[test]
    fn envelope_round_trips_through_split_id() {
        for (id, msg) in [
            (0u64, Msg::Ping(7)),
            (
                u64::MAX,
                Msg::Text {
                    s: "é".into(),
                    v: vec![-1, 2],
                },
            ),
        ] {
            let frame = encode(id, &msg).unwrap();
            let (got_id, body) = split_id(&frame).unwrap();
            assert_eq!(got_id, id);
            assert_eq!(decode_body::<Msg>(body).unwrap(), msg);
            let whole: Envelope<Msg> = postcard::from_bytes(&frame).unwrap();
            assert_eq!(whole, Envelope { id, body: msg });
        }
    }

    #[test]
    fn garbage_and_trailing_bytes_are_codec_errors() {
        assert!(matches!(split_id(&[]), Err(RpcError::Codec(_))));
        assert!(matches!(split_id(&[0xff; 11]), Err(RpcError::Codec(_))));
        let frame = encode(1, &Msg::Ping(1)).unwrap();
        let (_, body) = split_id(&frame).unwrap();
        let mut longer = body.to_vec();
        longer.push(0);
        assert!(matches!(decode_body::<Msg>(&longer), Err(RpcError::Codec(_))));
        assert!(matches!(decode_body::<Msg>(&[9]), Err(RpcError::Codec(_))));
    }

    #[test]
    fn oversized_message_is_refused_before_sending() {
        let big = vec![0u8; MAX_FRAME_LEN + 1];
        assert!(matches!(encode(1, &big), Err(RpcError::Codec(_))));
    }
}
