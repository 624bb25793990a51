//! Checkpoint storage locations (`checkpointing.storage`). Pure parsing of the URI.

use std::path::PathBuf;

/// URI schemes `checkpointing.storage` accepts in this build.
pub const SUPPORTED_STORAGE_SCHEMES: &[&str] = &["file"];

/// A parsed, supported checkpoint storage location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageLocation {
    /// `file:///absolute/path`: a directory on a local or mounted file system.
    Local(PathBuf),
}

impl StorageLocation {
    /// Parses `file:///absolute/path`.
    ///
    /// # Errors
    /// A message naming the allowed form when the scheme is missing or unsupported, or the
    /// path is not absolute.
    pub fn parse(uri: &str) -> Result<Self, String> {
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Err(format!("`{uri}` is not a URI; write file:///absolute/path"));
        };
        match scheme {
            "file" => {
                if !rest.starts_with('/') || rest.len() < 2 {
                    return Err(format!(
                        "`{uri}` must name an absolute directory, as in file:///var/lib/weir/checkpoints"
                    ));
                }
                Ok(Self::Local(PathBuf::from(rest)))
            }
            other => Err(format!(
                "unsupported scheme `{other}` in `{uri}`; allowed schemes: {}",
                SUPPORTED_STORAGE_SCHEMES
                    .iter()
                    .map(|s| format!("{s}://"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_uris() {
        assert_eq!(
            StorageLocation::parse("file:///tmp/x").unwrap(),
            StorageLocation::Local(PathBuf::from("/tmp/x"))
        );
    }

    #[test]
    fn refuses_relative_and_unknown() {
        assert!(StorageLocation::parse("file://tmp/x").is_err());
        assert!(StorageLocation::parse("/tmp/x").is_err());
        let e = StorageLocation::parse("gs://b/p").unwrap_err();
        assert!(e.contains("gs") && e.contains("file://"), "{e}");
    }
}
