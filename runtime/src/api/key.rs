//! Keys of keyed streams and their byte encoding. The encoding is hashed into key groups and
//! stored in state, so it is part of the checkpoint format and must never change.

/// A key could not be decoded from its bytes.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode key: {0}")]
pub struct KeyDecodeError(pub String);

/// A type usable as the key of a keyed stream.
///
/// Encodings: `String` as its UTF-8 bytes; `u64`/`i64` as 8 bytes big endian; `Vec<u8>` as
/// is; `Vec<String>` (compound keys) as each part's `u32 BE length | UTF-8 bytes`; a pair
/// `(A, B)` as `u32 BE length of A's encoding | A's encoding | B's encoding`.
pub trait Key: Clone + Send + 'static {
    /// Appends the key's bytes to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Decodes a key from bytes written by [`Key::encode`].
    ///
    /// # Errors
    /// [`KeyDecodeError`] when the bytes are not a valid encoding.
    fn decode(bytes: &[u8]) -> Result<Self, KeyDecodeError>;
}

impl Key for String {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    fn decode(bytes: &[u8]) -> Result<Self, KeyDecodeError> {
        String::from_utf8(bytes.to_vec()).map_err(|e| KeyDecodeError(e.to_string()))
    }
}

impl Key for Vec<u8> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn decode(bytes: &[u8]) -> Result<Self, KeyDecodeError> {
        Ok(bytes.to_vec())
    }
}

impl Key for u64 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
    fn decode(bytes: &[u8]) -> Result<Self, KeyDecodeError> {
        Ok(u64::from_be_bytes(bytes.try_into().map_err(|_| {
            KeyDecodeError(format!("u64 key needs 8 bytes, got {}", bytes.len()))
        })?))
    }
}

impl Key for i64 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
    fn decode(bytes: &[u8]) -> Result<Self, KeyDecodeError> {
        Ok(i64::from_be_bytes(bytes.try_into().map_err(|_| {
            KeyDecodeError(format!("i64 key needs 8 bytes, got {}", bytes.len()))
        })?))
    }
}

impl Key for Vec<String> {
    fn encode(&self, out: &mut Vec<u8>) {
        for part in self {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
    }
    fn decode(mut bytes: &[u8]) -> Result<Self, KeyDecodeError> {
        let mut parts = Vec::new();
        while !bytes.is_empty() {
            let n = bytes
                .get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .ok_or_else(|| KeyDecodeError("truncated compound key".into()))?;
            let part = bytes
                .get(4..4 + n)
                .ok_or_else(|| KeyDecodeError("truncated compound key".into()))?;
            parts
                .push(String::from_utf8(part.to_vec()).map_err(|e| KeyDecodeError(e.to_string()))?);
            bytes = &bytes[4 + n..];
        }
        Ok(parts)
    }
}

impl<A: Key, B: Key> Key for (A, B) {
    fn encode(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        self.0.encode(out);
        let n = (out.len() - at - 4) as u32;
        out[at..at + 4].copy_from_slice(&n.to_be_bytes());
        self.1.encode(out);
    }
    fn decode(bytes: &[u8]) -> Result<Self, KeyDecodeError> {
        let n = bytes
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| KeyDecodeError("truncated pair key".into()))?;
        let first = bytes
            .get(4..4 + n)
            .ok_or_else(|| KeyDecodeError("truncated pair key".into()))?;
        Ok((A::decode(first)?, B::decode(&bytes[4 + n..])?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<K: Key + PartialEq + std::fmt::Debug>(k: K) -> Vec<u8> {
        let mut b = Vec::new();
        k.encode(&mut b);
        assert_eq!(K::decode(&b).unwrap(), k);
        b
    }

    #[test]
    fn encodings_are_pinned() {
        assert_eq!(roundtrip("ab".to_string()), b"ab");
        assert_eq!(roundtrip(1u64), [0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(roundtrip(-1i64), [0xff; 8]);
        assert_eq!(
            roundtrip(vec!["a".to_string(), "".to_string()]),
            [0, 0, 0, 1, b'a', 0, 0, 0, 0]
        );
        assert_eq!(
            roundtrip(("a".to_string(), 2i64)),
            [0, 0, 0, 1, b'a', 0, 0, 0, 0, 0, 0, 0, 2]
        );
    }
}
