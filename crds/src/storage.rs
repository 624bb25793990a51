//! Checkpoint storage locations (`checkpointing.storage` and `checkpointing.s3`). Pure
//! parsing and validation.

use std::path::PathBuf;

use crate::spec::S3Spec;

/// URI schemes `checkpointing.storage` accepts.
pub const SUPPORTED_STORAGE_SCHEMES: &[&str] = &["s3", "file"];

/// A parsed, supported checkpoint storage location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageLocation {
    /// `file:///absolute/path`: a directory on a local or mounted file system.
    Local(PathBuf),
    /// `s3://bucket/prefix`.
    S3(S3Location),
}

/// An S3 bucket and key prefix with the client settings to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// Endpoint URL of an S3-compatible store; `None` for AWS S3.
    pub endpoint: Option<String>,
    /// Region; `None` = from the environment, else `us-east-1`.
    pub region: Option<String>,
    /// Path-style addressing.
    pub path_style: bool,
}

impl StorageLocation {
    /// Parses `file:///absolute/path` or `s3://bucket/prefix` (with `s3` settings).
    ///
    /// # Errors
    /// A message naming the allowed forms when the scheme is missing or unsupported, the
    /// path is not absolute, or the bucket name is not a valid S3 bucket name.
    pub fn parse(uri: &str) -> Result<Self, String> {
        Self::parse_with(uri, None)
    }

    /// Like [`StorageLocation::parse`], applying `s3` settings to an `s3://` location.
    ///
    /// # Errors
    /// As [`StorageLocation::parse`], and when an endpoint is not an http(s) URL.
    pub fn parse_with(uri: &str, s3: Option<&S3Spec>) -> Result<Self, String> {
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Err(format!(
                "`{uri}` is not a URI; write s3://bucket/prefix or file:///absolute/path"
            ));
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
            "s3" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if !is_bucket_name(bucket) {
                    return Err(format!(
                        "`{bucket}` in `{uri}` is not an S3 bucket name (3-63 lowercase letters, digits, '.' and '-')"
                    ));
                }
                let s3 = s3.cloned().unwrap_or_default();
                if let Some(e) = &s3.endpoint {
                    if !(e.starts_with("http://") || e.starts_with("https://")) {
                        return Err(format!("endpoint `{e}` must be an http:// or https:// URL"));
                    }
                }
                Ok(Self::S3(S3Location {
                    bucket: bucket.to_string(),
                    prefix: prefix.trim_matches('/').to_string(),
                    endpoint: s3.endpoint,
                    region: s3.region,
                    path_style: s3.path_style,
                }))
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

fn is_bucket_name(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
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
    fn parses_s3_uris_with_settings() {
        let s3 = S3Spec {
            endpoint: Some("http://127.0.0.1:9000".into()),
            path_style: true,
            ..Default::default()
        };
        let StorageLocation::S3(l) =
            StorageLocation::parse_with("s3://my-bucket/a/b/", Some(&s3)).unwrap()
        else {
            panic!("not s3")
        };
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str(), l.path_style),
            ("my-bucket", "a/b", true)
        );
        let StorageLocation::S3(l) = StorageLocation::parse("s3://bucket").unwrap() else {
            panic!()
        };
        assert_eq!(l.prefix, "");
    }

    #[test]
    fn refuses_relative_unknown_and_bad_buckets() {
        assert!(StorageLocation::parse("file://tmp/x").is_err());
        assert!(StorageLocation::parse("/tmp/x").is_err());
        assert!(StorageLocation::parse("s3://Bad_Bucket/x").is_err());
        let e = StorageLocation::parse("gs://b/p").unwrap_err();
        assert!(
            e.contains("gs") && e.contains("s3://") && e.contains("file://"),
            "{e}"
        );
        let bad = S3Spec {
            endpoint: Some("minio:9000".into()),
            ..Default::default()
        };
        assert!(StorageLocation::parse_with("s3://bucket", Some(&bad)).is_err());
    }
}
