//! The consumer end of network channels: a worker's data server accepts one connection per
//! channel, hands each frame to the inlet the consumer task registered, and grants a credit
//! once the frame is queued.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use weir_api_types::AdminToken;

use super::{auth, read_frame, ChannelId};

/// Where a channel's frames go: decodes a frame and queues it for the consumer task,
/// blocking while the task's input queue is full.
pub trait InletSink: Send {
    /// Queues one frame.
    ///
    /// # Errors
    /// A message when the frame does not decode or the consumer task is gone.
    fn push(&self, frame: &[u8]) -> Result<(), String>;
}

#[derive(Default)]
struct InletState {
    registered: HashMap<ChannelId, (Box<dyn InletSink>, u32)>,
    /// Channels of attempts below this are refused (a newer deployment replaced them).
    min_attempt: u64,
}

/// The inlets registered by this worker's consumer tasks, by channel.
#[derive(Default)]
pub struct Inlets {
    state: Mutex<InletState>,
    changed: Condvar,
}

impl Inlets {
    /// Registers the inlet of `channel`, granting `capacity` credits to its producer.
    pub fn register(&self, channel: ChannelId, sink: Box<dyn InletSink>, capacity: u32) {
        let mut s = self.state.lock().expect("invariant: not poisoned");
        s.registered.insert(channel, (sink, capacity));
        self.changed.notify_all();
    }

    /// Drops every inlet of attempts up to `attempt` and refuses their connections.
    pub fn cancel(&self, attempt: u64) {
        let mut s = self.state.lock().expect("invariant: not poisoned");
        s.min_attempt = s.min_attempt.max(attempt + 1);
        s.registered.retain(|c, _| c.attempt > attempt);
        self.changed.notify_all();
    }

    /// Waits up to `timeout` for the inlet of `channel`.
    fn take(&self, channel: ChannelId, timeout: Duration) -> Option<(Box<dyn InletSink>, u32)> {
        let deadline = Instant::now() + timeout;
        let mut s = self.state.lock().expect("invariant: not poisoned");
        loop {
            if channel.attempt < s.min_attempt {
                return None;
            }
            if let Some(found) = s.registered.remove(&channel) {
                return Some(found);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            s = self
                .changed
                .wait_timeout(s, left)
                .expect("invariant: not poisoned")
                .0;
        }
    }
}

/// A worker's data server.
pub struct DataServer {
    /// The address peers connect to.
    pub addr: SocketAddr,
    /// Its inlets.
    pub inlets: Arc<Inlets>,
}

impl DataServer {
    /// Listens on `bind` (port 0 = any free port) and serves connections on threads; with a
    /// `token`, a connection that does not present it is closed and counted
    /// ([`auth::Port::Data`]).
    ///
    /// # Errors
    /// I/O errors binding the address.
    pub fn start(bind: SocketAddr, token: Option<AdminToken>) -> io::Result<Self> {
        let listener = TcpListener::bind(bind)?;
        let token = Arc::new(token);
        let addr = listener.local_addr()?;
        let inlets = Arc::new(Inlets::default());
        let i = inlets.clone();
        std::thread::Builder::new()
            .name("data-server".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let i = i.clone();
                    let token = token.clone();
                    let _ = std::thread::Builder::new()
                        .name("data-in".into())
                        .spawn(move || {
                            if let Err(e) = serve(stream, &i, token.as_ref().as_ref()) {
                                debug!("data connection ended: {e}");
                            }
                        });
                }
            })?;
        Ok(Self { addr, inlets })
    }
}

fn serve(mut stream: TcpStream, inlets: &Inlets, token: Option<&AdminToken>) -> io::Result<()> {
    use std::io::Read;
    stream.set_nodelay(true)?;
    let mut hello = [0u8; 20];
    stream.read_exact(&mut hello)?;
    let channel = ChannelId::decode(&hello);
    if !auth::verify(&mut stream, token)? {
        auth::count_refused(auth::Port::Data);
        let peer = stream.peer_addr().ok();
        warn!(?peer, "refused a data connection without the job's token");
        return Ok(());
    }
    let Some((sink, capacity)) = inlets.take(channel, Duration::from_secs(120)) else {
        warn!(
            ?channel,
            "no consumer for this channel (an old attempt, or never deployed); closing it"
        );
        return Ok(());
    };
    stream.write_all(&capacity.to_le_bytes())?;
    let mut reader = io::BufReader::with_capacity(256 << 10, stream.try_clone()?);
    let mut frame = Vec::new();
    while read_frame(&mut reader, &mut frame)? {
        if let Err(e) = sink.push(&frame) {
            debug!(?channel, "closing channel: {e}");
            return Ok(());
        }
        stream.write_all(&1u32.to_le_bytes())?;
    }
    Ok(())
}
