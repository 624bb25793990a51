//! The byte encoding of shuffle messages between workers: a tag byte, then
//!
//! | tag | message | payload |
//! | --- | --- | --- |
//! | 0 | records | `u32` count, then per record: `i64` event time, then on a hash exchange `u16` key group, `u32` key length, key bytes ([`Key::encode`]), and always the value (postcard); into a keyed broadcast operator a `u8` first: 0 keyed record as on a hash exchange, 1 broadcast element (its value) |
//! | 1 | watermark | `i64` |
//! | 2 | barrier | `u64` checkpoint id, `u8` kind (0 checkpoint, 1 savepoint) |
//! | 3 | end of input | — |
//! | 4 | idle (no records for now) | — |
//!
//! All integers little endian. Only processes of the same build talk to each other, so the
//! encoding is not versioned.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Message;
use crate::api::broadcast::Connected;
use crate::api::{CheckpointBarrier, Key, KeyedRecord};
use crate::checkpoint::SnapshotKind;
use crate::state::KeyGroup;

/// Appends `msg` to `out`, writing each record with `record`.
fn encode_with<R>(msg: &Message<R>, out: &mut Vec<u8>, mut record: impl FnMut(&R, &mut Vec<u8>)) {
    match msg {
        Message::Records(batch) => {
            out.push(0);
            out.extend_from_slice(&(batch.len() as u32).to_le_bytes());
            for (ts, r) in batch {
                out.extend_from_slice(&ts.to_le_bytes());
                record(r, out);
            }
        }
        Message::Watermark(w) => {
            out.push(1);
            out.extend_from_slice(&w.to_le_bytes());
        }
        Message::Barrier(b) => {
            out.push(2);
            out.extend_from_slice(&b.id.to_le_bytes());
            out.push(match b.kind {
                SnapshotKind::Checkpoint => 0,
                SnapshotKind::Savepoint => 1,
            });
        }
        Message::EndOfInput => out.push(3),
        Message::Idle => out.push(4),
    }
}

/// Appends `value` in postcard to `out`.
fn put_value<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    let taken = std::mem::take(out);
    *out =
        postcard::to_extend(value, taken).expect("invariant: serializing into a Vec cannot fail");
}

/// Appends keyed record `r` to `out` (`key` is scratch space).
fn put_keyed<K: Key, T: Serialize>(r: &KeyedRecord<K, T>, key: &mut Vec<u8>, out: &mut Vec<u8>) {
    out.extend_from_slice(&r.key_group.0.to_le_bytes());
    key.clear();
    r.key.encode(key);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    put_value(&r.value, out);
}

/// Appends `msg` of a hash exchange to `out`.
pub(crate) fn encode_keyed<K: Key, T: Serialize>(
    msg: &Message<KeyedRecord<K, T>>,
    out: &mut Vec<u8>,
) {
    let mut key = Vec::with_capacity(32);
    encode_with(msg, out, |r, out| put_keyed(r, &mut key, out));
}

/// Appends `msg` into a keyed broadcast operator to `out`.
pub(crate) fn encode_connected<K: Key, T: Serialize, B: Serialize>(
    msg: &Message<Connected<K, T, B>>,
    out: &mut Vec<u8>,
) {
    let mut key = Vec::with_capacity(32);
    encode_with(msg, out, |r, out| match r {
        Connected::Keyed(r) => {
            out.push(0);
            put_keyed(r, &mut key, out);
        }
        Connected::Broadcast(b) => {
            out.push(1);
            put_value(b, out);
        }
    });
}

/// Appends `msg` of a forward exchange (records without keys) to `out`.
pub(crate) fn encode_plain<T: Serialize>(msg: &Message<T>, out: &mut Vec<u8>) {
    encode_with(msg, out, |r, out| put_value(r, out));
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!(
                "frame truncated: need {n} bytes, {} left",
                self.0.len()
            ));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("invariant: N bytes"))
    }
    fn value<T: DeserializeOwned>(&mut self) -> Result<T, String> {
        let (value, rest) =
            postcard::take_from_bytes::<T>(self.0).map_err(|e| format!("value: {e}"))?;
        self.0 = rest;
        Ok(value)
    }
}

/// Decodes a frame written by [`encode_with`], reading each record with `record`.
fn decode_with<R>(
    frame: &[u8],
    mut record: impl FnMut(&mut Cursor<'_>) -> Result<R, String>,
) -> Result<Message<R>, String> {
    let mut c = Cursor(frame);
    Ok(match c.u8()? {
        0 => {
            let n = u32::from_le_bytes(c.array()?) as usize;
            let mut batch = Vec::with_capacity(n);
            for _ in 0..n {
                let ts = i64::from_le_bytes(c.array()?);
                batch.push((ts, record(&mut c)?));
            }
            Message::Records(batch)
        }
        1 => Message::Watermark(i64::from_le_bytes(c.array()?)),
        2 => {
            let id = u64::from_le_bytes(c.array()?);
            let kind = match c.u8()? {
                0 => SnapshotKind::Checkpoint,
                1 => SnapshotKind::Savepoint,
                k => return Err(format!("unknown barrier kind {k}")),
            };
            Message::Barrier(CheckpointBarrier { id, kind })
        }
        3 => Message::EndOfInput,
        4 => Message::Idle,
        t => return Err(format!("unknown message tag {t}")),
    })
}

/// Decodes a frame written by [`encode_keyed`].
///
/// # Errors
/// A message when the frame is truncated or a key or value does not decode.
pub(crate) fn decode_keyed<K: Key, T: DeserializeOwned>(
    frame: &[u8],
) -> Result<Message<KeyedRecord<K, T>>, String> {
    decode_with(frame, take_keyed)
}

/// Reads a keyed record written by [`put_keyed`].
fn take_keyed<K: Key, T: DeserializeOwned>(
    c: &mut Cursor<'_>,
) -> Result<KeyedRecord<K, T>, String> {
    let key_group = KeyGroup(u16::from_le_bytes(c.array()?));
    let len = u32::from_le_bytes(c.array()?) as usize;
    let key = K::decode(c.take(len)?).map_err(|e| e.to_string())?;
    Ok(KeyedRecord {
        key_group,
        key,
        value: c.value()?,
    })
}

/// Decodes a frame written by [`encode_connected`].
///
/// # Errors
/// A message when the frame is truncated, its element tag is unknown, or a key or value does
/// not decode.
pub(crate) fn decode_connected<K: Key, T: DeserializeOwned, B: DeserializeOwned>(
    frame: &[u8],
) -> Result<Message<Connected<K, T, B>>, String> {
    decode_with(frame, |c| match c.u8()? {
        0 => take_keyed(c).map(Connected::Keyed),
        1 => c.value().map(Connected::Broadcast),
        t => Err(format!("unknown element tag {t}")),
    })
}

/// Decodes a frame written by [`encode_plain`].
///
/// # Errors
/// A message when the frame is truncated or a value does not decode.
pub(crate) fn decode_plain<T: DeserializeOwned>(frame: &[u8]) -> Result<Message<T>, String> {
    decode_with(frame, |c| c.value())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_messages_round_trip() {
        let batch = vec![
            (
                5i64,
                KeyedRecord {
                    key_group: KeyGroup(7),
                    key: "k1".to_string(),
                    value: (1.5f64, "x".to_string()),
                },
            ),
            (
                -3,
                KeyedRecord {
                    key_group: KeyGroup(127),
                    key: String::new(),
                    value: (f64::NAN, String::new()),
                },
            ),
        ];
        let mut out = Vec::new();
        encode_keyed(&Message::Records(batch), &mut out);
        match decode_keyed::<String, (f64, String)>(&out).unwrap() {
            Message::Records(b) => {
                assert_eq!(b.len(), 2);
                assert_eq!(
                    (b[0].0, b[0].1.key_group.0, b[0].1.key.as_str()),
                    (5, 7, "k1")
                );
                assert_eq!(b[0].1.value.0, 1.5);
                assert_eq!((b[1].0, b[1].1.key_group.0), (-3, 127));
                assert!(b[1].1.value.0.is_nan());
            }
            _ => panic!("expected records"),
        }
        for msg in [
            Message::Watermark(42),
            Message::Barrier(CheckpointBarrier {
                id: 9,
                kind: SnapshotKind::Savepoint,
            }),
            Message::EndOfInput,
            Message::Idle,
        ] {
            let mut out = Vec::new();
            encode_keyed::<String, u8>(&msg, &mut out);
            let back = decode_keyed::<String, u8>(&out).unwrap();
            assert_eq!(format!("{back:?}"), format!("{msg:?}"));
        }
        assert!(decode_keyed::<String, u8>(&[0, 1, 0, 0, 0, 1]).is_err());
        let connected = vec![
            (
                1i64,
                Connected::<String, u8, String>::Keyed(KeyedRecord {
                    key_group: KeyGroup(3),
                    key: "k".into(),
                    value: 9,
                }),
            ),
            (2, Connected::Broadcast("rule".into())),
        ];
        let mut out = Vec::new();
        encode_connected(&Message::Records(connected), &mut out);
        match decode_connected::<String, u8, String>(&out).unwrap() {
            Message::Records(b) => {
                assert!(matches!(&b[0].1, Connected::Keyed(r) if r.key == "k" && r.value == 9));
                assert!(matches!(&b[1].1, Connected::Broadcast(s) if s == "rule"));
            }
            _ => panic!("expected records"),
        }
        let mut out = Vec::new();
        encode_plain(&Message::Records(vec![(3i64, "v".to_string())]), &mut out);
        match decode_plain::<String>(&out).unwrap() {
            Message::Records(b) => assert_eq!(b, vec![(3, "v".to_string())]),
            _ => panic!("expected records"),
        }
    }
}
