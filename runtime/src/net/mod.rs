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
//! channel. Connections of an earlier attempt (before a failover) are refused, and so are
//! connections without the job's token when the job has one ([`auth`]): the handshake carries
//! it after the channel id.

pub mod auth;
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
    /// The job's token, presented to the peers' data servers.
    pub token: Option<weir_api_types::AdminToken>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    struct Queue(crossbeam_channel::Sender<Vec<u8>>);

    impl InletSink for Queue {
        fn push(&self, frame: &[u8]) -> Result<(), String> {
            self.0.send(frame.to_vec()).map_err(|e| e.to_string())
        }
    }

    #[test]
    fn a_consumer_that_does_not_read_stops_its_producer_after_its_credits() {
        let server = DataServer::start("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let channel = ChannelId {
            attempt: 1,
            exchange: 0,
            producer: 0,
            consumer: 1,
        };
        // The consumer task's input queue holds 2 frames and nobody reads it yet.
        let (tx, rx) = crossbeam_channel::bounded(2);
        server.inlets.register(channel, Box::new(Queue(tx)), 2);
        let sender =
            CreditSender::connect(server.addr, channel, Duration::from_secs(5), None).unwrap();
        let sent = Arc::new(AtomicUsize::new(0));
        let s = sent.clone();
        let producer = std::thread::spawn(move || {
            for i in 0..10u8 {
                sender.send(vec![0, 0, 0, 0, i]).unwrap();
                s.fetch_add(1, Ordering::SeqCst);
            }
        });
        std::thread::sleep(Duration::from_millis(500));
        // 2 frames in the queue, 1 held by the server waiting for queue space, 1 in flight;
        // then no credit is left and the producer waits.
        assert_eq!(sent.load(Ordering::SeqCst), 4);
        let received: Vec<u8> = (0..10).map(|_| rx.recv().unwrap()[0]).collect();
        producer.join().unwrap();
        assert_eq!(
            received,
            (0..10).collect::<Vec<u8>>(),
            "in order, nothing lost"
        );
    }

    #[test]
    fn channels_of_a_cancelled_attempt_are_refused() {
        let server = DataServer::start("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let channel = ChannelId {
            attempt: 3,
            exchange: 0,
            producer: 0,
            consumer: 1,
        };
        server.inlets.cancel(3);
        let sender =
            CreditSender::connect(server.addr, channel, Duration::from_secs(5), None).unwrap();
        let err = sender.send(vec![0, 0, 0, 0, 1]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn a_channel_without_the_jobs_token_is_closed_and_counted() {
        let token = weir_api_types::AdminToken::generate();
        let server =
            DataServer::start("127.0.0.1:0".parse().unwrap(), Some(token.clone())).unwrap();
        let channel = |producer| ChannelId {
            attempt: 1,
            exchange: 0,
            producer,
            consumer: 1,
        };
        let (tx, rx) = crossbeam_channel::bounded(4);
        server.inlets.register(channel(0), Box::new(Queue(tx)), 4);
        let before = auth::refused(auth::Port::Data);
        for presented in [None, Some(weir_api_types::AdminToken::generate())] {
            let sender = CreditSender::connect(
                server.addr,
                channel(0),
                Duration::from_secs(5),
                presented.as_ref(),
            )
            .unwrap();
            let err = sender.send(vec![0, 0, 0, 0, 1]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        }
        assert_eq!(auth::refused(auth::Port::Data), before + 2);
        // The consumer still waits for its producer, which presents the token.
        let sender = CreditSender::connect(
            server.addr,
            channel(0),
            Duration::from_secs(5),
            Some(&token),
        )
        .unwrap();
        sender.send(vec![0, 0, 0, 0, 7]).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), vec![7]);
    }
}
