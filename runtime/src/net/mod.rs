//! The data plane between worker processes: one TCP connection per shuffle channel (producer
//! subtask → consumer subtask of one exchange), carrying length-prefixed frames, with
//! credit-based flow control (Flink's credit-based network stack, simplified to one credit
//! per buffered batch):
//!
//! ```text
//! producer                                   consumer's worker
//!   ── handshake (attempt, exchange, producer, consumer) ──▶
//!   ◀── credit n (its free input buffers) ───────────────────
//!   ── frame (a batch, watermark, barrier or end of input) ─▶  queued in the bounded input
//!   ◀── credit 1 once the frame entered the input queue ─────   channel of the consumer task
//! ```
//!
//! A producer sends only with a credit, so a slow consumer slows its producers: at most
//! `capacity` frames are queued at the consumer and at most `capacity` more in flight, per
//! channel. Connections of an earlier attempt (before a failover) are refused.

pub mod inlet;
pub mod outlet;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

pub use inlet::{DataServer, InletSink, Inlets};
pub use outlet::CreditSender;

/// Frames larger than this are refused as corrupt (bytes).
pub const MAX_FRAME: usize = 256 << 20;

/// Identifies one shuffle channel of one deployment attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelId {
    /// Deployment attempt (grows with every restart of the job).
    pub attempt: u64,
    /// Index of the exchange in the job graph (build order).
    pub exchange: u32,
    /// Producer subtask.
    pub producer: u32,
    /// Consumer subtask.
    pub consumer: u32,
}

impl ChannelId {
    fn encode(&self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[..8].copy_from_slice(&self.attempt.to_le_bytes());
        b[8..12].copy_from_slice(&self.exchange.to_le_bytes());
        b[12..16].copy_from_slice(&self.producer.to_le_bytes());
        b[16..].copy_from_slice(&self.consumer.to_le_bytes());
        b
    }

    fn decode(b: &[u8; 20]) -> Self {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Self {
            attempt: u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
            exchange: u32_at(8),
            producer: u32_at(12),
            consumer: u32_at(16),
        }
    }
}

/// Reads one length-prefixed frame (`u32 LE length | bytes`) into `buf`; `Ok(false)` at a
/// clean end of stream.
///
/// # Errors
/// I/O errors, a stream ending inside a frame, or a length above [`MAX_FRAME`].
pub fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {MAX_FRAME}"),
        ));
    }
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf)?;
    Ok(true)
}

/// Writes one length-prefixed frame.
///
/// # Errors
/// I/O errors.
pub fn write_frame(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let mut out = Vec::with_capacity(4 + bytes.len());
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
    w.write_all(&out)
}

/// What a worker's tasks need to build exchanges that cross processes.
#[derive(Clone)]
pub struct NetworkContext {
    /// The deployment attempt.
    pub attempt: u64,
    /// The inlets of this worker's data server.
    pub inlets: Arc<Inlets>,
    /// Data address of the worker running each subtask (index = subtask).
    pub peers: Vec<SocketAddr>,
    /// Subtasks running in this process.
    pub local: Vec<u32>,
}
