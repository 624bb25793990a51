//! Authentication of a job's own connections with its admin token
//! ([`weir_api_types::AdminToken`]): workers present it when they register with the
//! coordinator (control port) and when they open a shuffle channel to a peer (data port); the
//! admin API requires it as a bearer token. A refused connection is closed, logged and counted
//! here ([`refused`]; the coordinator's `/metrics` exports its counts as
//! `weir_refused_connections_total{port}`), and the job runs on.
//!
//! The token crosses the network in clear, as an HTTP bearer token does: the pod network is
//! trusted to keep it, NetworkPolicies keep other pods from reaching the ports at all.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use weir_api_types::AdminToken;

use super::write_frame;

/// A port of the job that authenticates its peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// The coordinator's admin API (HTTP).
    Admin,
    /// The coordinator's control port (worker registrations).
    Control,
    /// A worker's data port (shuffle channels).
    Data,
}

impl Port {
    /// Every port, in a fixed order.
    pub const ALL: [Port; 3] = [Port::Admin, Port::Control, Port::Data];

    /// The metric label: `admin`, `control` or `data`.
    pub fn label(self) -> &'static str {
        match self {
            Port::Admin => "admin",
            Port::Control => "control",
            Port::Data => "data",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

static REFUSED: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// Counts a connection or request this process refused on `port`.
pub fn count_refused(port: Port) {
    REFUSED[port.index()].fetch_add(1, Ordering::Relaxed);
}

/// Connections or requests this process refused on `port` since it started.
pub fn refused(port: Port) -> u64 {
    REFUSED[port.index()].load(Ordering::Relaxed)
}

/// Longest credential a peer may present (bytes): more is refused unread.
const MAX_CREDENTIAL: usize = 1024;

/// Writes the credential of a data connection: one frame holding the token (empty without
/// one).
///
/// # Errors
/// I/O errors.
pub fn present(w: &mut impl Write, token: Option<&AdminToken>) -> io::Result<()> {
    write_frame(w, token.map_or(&b""[..], |t| t.expose().as_bytes()))
}

/// Reads the credential [`present`] wrote and checks it against `token`: `Ok(true)` when it
/// matches or this side has no token (which admits anyone). A credential longer than 1 KiB
/// is refused unread on either side: no peer of ours sends one, and the stream's framing after
/// it would be lost.
///
/// # Errors
/// I/O errors, or a stream ending early.
pub fn verify(r: &mut impl Read, token: Option<&AdminToken>) -> io::Result<bool> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_CREDENTIAL {
        return Ok(false);
    }
    let mut presented = vec![0u8; len];
    r.read_exact(&mut presented)?;
    Ok(token.is_none_or(|t| std::str::from_utf8(&presented).is_ok_and(|p| t.matches(p))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(presented: Option<&AdminToken>, expected: Option<&AdminToken>) -> bool {
        let mut wire = Vec::new();
        present(&mut wire, presented).unwrap();
        verify(&mut wire.as_slice(), expected).unwrap()
    }

    #[test]
    fn only_the_jobs_token_is_admitted_where_one_is_set() {
        let (t, other) = (AdminToken::generate(), AdminToken::generate());
        assert!(round_trip(Some(&t), Some(&t)));
        assert!(!round_trip(Some(&other), Some(&t)));
        assert!(!round_trip(None, Some(&t)));
        assert!(round_trip(None, None));
        assert!(round_trip(Some(&t), None));
    }

    #[test]
    fn an_oversized_credential_is_refused_unread() {
        let mut wire = (4096u32).to_le_bytes().to_vec();
        wire.extend(std::iter::repeat_n(b'x', 4096));
        assert!(!verify(&mut wire.as_slice(), Some(&AdminToken::generate())).unwrap());
        assert!(!verify(&mut wire.as_slice(), None).unwrap());
    }
}
