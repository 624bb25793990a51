//! The producer end of a network channel: sends frames only against credits granted by the
//! consumer's worker.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use weir_api_types::AdminToken;

use super::{auth, ChannelId};

#[derive(Default)]
struct Credits {
    /// (available credits, connection closed)
    state: Mutex<(u64, bool)>,
    changed: Condvar,
}

/// A connected channel to a consumer subtask on another worker.
pub struct CreditSender {
    stream: Mutex<TcpStream>,
    credits: Arc<Credits>,
    peer: SocketAddr,
}

impl CreditSender {
    /// Connects to the data server at `peer` for `channel`, presenting the job's `token`,
    /// retrying for up to `timeout` (the peer may still be starting), and starts the thread
    /// that reads credits.
    ///
    /// # Errors
    /// The last connection error once `timeout` has passed.
    pub fn connect(
        peer: SocketAddr,
        channel: ChannelId,
        timeout: Duration,
        token: Option<&AdminToken>,
    ) -> io::Result<Self> {
        let deadline = Instant::now() + timeout;
        let mut stream = loop {
            match TcpStream::connect_timeout(&peer, Duration::from_secs(2)) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(%peer, "data connection: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        };
        stream.set_nodelay(true)?;
        stream.write_all(&channel.encode())?;
        auth::present(&mut stream, token)?;
        let credits = Arc::new(Credits::default());
        let mut reader = stream.try_clone()?;
        let c = credits.clone();
        std::thread::Builder::new()
            .name(format!("credits-{}-{}", channel.producer, channel.consumer))
            .spawn(move || {
                let mut grant = [0u8; 4];
                while reader.read_exact(&mut grant).is_ok() {
                    let mut s = c.state.lock().expect("invariant: not poisoned");
                    s.0 += u64::from(u32::from_le_bytes(grant));
                    c.changed.notify_all();
                }
                let mut s = c.state.lock().expect("invariant: not poisoned");
                s.1 = true;
                c.changed.notify_all();
            })?;
        Ok(Self {
            stream: Mutex::new(stream),
            credits,
            peer,
        })
    }

    /// Sends one frame (`bytes` starts with 4 bytes reserved for the length), waiting for a
    /// credit first; returns how long it waited for one (backpressure).
    ///
    /// # Errors
    /// `BrokenPipe` when the consumer's worker closed the channel (its task is gone).
    pub fn send(&self, mut bytes: Vec<u8>) -> io::Result<Duration> {
        let started = Instant::now();
        let mut waited = Duration::ZERO;
        {
            let mut s = self.credits.state.lock().expect("invariant: not poisoned");
            while s.0 == 0 && !s.1 {
                s = self
                    .credits
                    .changed
                    .wait(s)
                    .expect("invariant: not poisoned");
                waited = started.elapsed();
            }
            if s.1 {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    format!("channel to {} closed", self.peer),
                ));
            }
            s.0 -= 1;
        }
        let len = (bytes.len() - 4) as u32;
        bytes[..4].copy_from_slice(&len.to_le_bytes());
        self.stream
            .lock()
            .expect("invariant: not poisoned")
            .write_all(&bytes)?;
        Ok(waited)
    }
}

impl Drop for CreditSender {
    fn drop(&mut self) {
        if let Ok(s) = self.stream.lock() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}
