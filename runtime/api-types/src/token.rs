//! A job's admin token: the shared secret every admin request carries
//! (`Authorization: Bearer <token>`) and with which workers authenticate to their coordinator.
//! On Kubernetes the operator draws one per StreamJob into a Secret the job's pods mount; `weir
//! run` draws one per run and writes it, mode 0600, next to its published admin URL.

use std::fmt;

use subtle::ConstantTimeEq;

/// The key of the token in the operator's Secret, and the file name it is mounted as.
pub const ADMIN_TOKEN_KEY: &str = "token";

/// Bytes drawn for a token (hex-encoded: 64 characters).
const TOKEN_BYTES: usize = 32;

/// Shortest token accepted from a file (characters): a token a person wrote by hand must still
/// not be guessable.
const MIN_TOKEN_LEN: usize = 32;

/// A job's admin token: printable ASCII without spaces, at least 32 characters. `Debug` and
/// `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Shorter than 32 characters after trimming (an empty file, a truncated Secret).
    #[error("the admin token has {0} characters; it needs at least {MIN_TOKEN_LEN}")]
    TooShort(usize),
    /// A character outside printable ASCII, or a space inside.
    #[error("the admin token must be printable ASCII without spaces")]
    Malformed,
}

impl AdminToken {
    /// A new token: 32 bytes from the operating system's random generator, as 64 lowercase
    /// hex digits.
    ///
    /// # Panics
    /// When the operating system has no random generator (no secure token can be made).
    pub fn generate() -> Self {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes).expect("invariant: the OS random generator works");
        AdminToken(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// A token as read from a file or a Secret: surrounding whitespace (a trailing newline) is
    /// ignored.
    ///
    /// # Errors
    /// [`TokenError::TooShort`] below 32 characters, [`TokenError::Malformed`] for spaces or
    /// characters outside printable ASCII.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let t = text.trim();
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::Malformed);
        }
        if t.len() < MIN_TOKEN_LEN {
            return Err(TokenError::TooShort(t.len()));
        }
        Ok(AdminToken(t.to_string()))
    }

    /// The secret itself, to write into a Secret or a file.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The value of the `Authorization` header that carries it: `Bearer <token>`.
    pub fn authorization(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// True when `authorization` (the request's `Authorization` header, if any) is `Bearer`
    /// with this token. Compared in constant time.
    pub fn admits(&self, authorization: Option<&str>) -> bool {
        let Some(presented) = authorization.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        self.matches(presented.trim())
    }

    /// True when `presented` is this token. Compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        bool::from(self.0.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// Serialized as the token itself (in the workers' registration message), deserialized
/// through [`AdminToken::parse`], so a malformed token never becomes a value.
impl serde::Serialize for AdminToken {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for AdminToken {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        AdminToken::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_differ_and_parse_back() {
        let (a, b) = (AdminToken::generate(), AdminToken::generate());
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 64);
        assert_eq!(AdminToken::parse(&format!("{}\n", a.expose())), Ok(a));
    }

    #[test]
    fn only_the_bearer_header_with_the_same_token_is_admitted() {
        let t = AdminToken::generate();
        assert!(t.admits(Some(&t.authorization())));
        assert!(!t.admits(None));
        assert!(!t.admits(Some(t.expose())));
        assert!(!t.admits(Some(&AdminToken::generate().authorization())));
        assert!(!t.admits(Some("Bearer ")));
        assert!(!format!("{t:?}").contains(t.expose()));
    }

    #[test]
    fn tokens_serialize_as_themselves_and_deserialize_only_when_valid() {
        let t = AdminToken::generate();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, format!("\"{}\"", t.expose()));
        assert_eq!(serde_json::from_str::<AdminToken>(&json).unwrap(), t);
        assert!(serde_json::from_str::<AdminToken>("\"short\"").is_err());
    }

    #[test]
    fn short_or_spaced_tokens_are_refused() {
        assert_eq!(AdminToken::parse(" \n"), Err(TokenError::TooShort(0)));
        assert_eq!(
            AdminToken::parse(&"a b".repeat(20)),
            Err(TokenError::Malformed)
        );
    }
}
