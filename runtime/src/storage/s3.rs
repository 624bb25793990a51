//! `s3://bucket/prefix` checkpoint storage with aws-sdk-s3 (the only module that talks to S3).
//!
//! Credentials come from the standard AWS chain (environment, profile, web identity,
//! instance metadata; not SSO profiles, whose SDK feature is off). Requests retry with exponential backoff and jitter (the SDK's standard
//! retry mode, 5 attempts). Objects above 16 MiB go up as multipart uploads of 8 MiB parts;
//! a failed multipart upload is aborted. Checksums are sent only where the API requires them,
//! which keeps S3-compatible stores (Garage) that reject unexpected part checksums working.
//! The client is async; this storage is blocking and runs it on its own small runtime. HTTPS goes
//! through the SDK's hyper client with rustls over ring (the SDK's default would build aws-lc).

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::Provider;
use weir_crds::S3Location;

use super::{CheckpointStorage, StatsCounter, StorageError, StorageStats};

/// Objects larger than this are uploaded in parts.
pub const MULTIPART_THRESHOLD: usize = 16 << 20;
/// Size of each part of a multipart upload (the last may be smaller).
pub const PART_SIZE: usize = 8 << 20;

/// Checkpoint storage in an S3 bucket under a key prefix.
pub struct S3Storage {
    client: Client,
    bucket: String,
    prefix: String,
    rt: tokio::runtime::Runtime,
    stats: StatsCounter,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl S3Storage {
    /// A client for `location`; no request is sent until the first operation.
    ///
    /// # Errors
    /// [`StorageError`] when the async runtime cannot start.
    pub fn open(location: &S3Location) -> Result<Self, StorageError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("weir-s3")
            .enable_all()
            .build()
            .map_err(|e| StorageError {
                action: "start S3 client for",
                location: format!("s3://{}", location.bucket),
                source: Box::new(e),
            })?;
        let https = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let shared = rt.block_on(
            aws_config::defaults(BehaviorVersion::latest())
                .http_client(https)
                .load(),
        );
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(location.path_style)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(5)
                    .with_initial_backoff(Duration::from_millis(100)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .build(),
            )
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &location.endpoint {
            config = config.endpoint_url(endpoint);
        }
        match (&location.region, shared.region()) {
            (Some(r), _) => config = config.region(Region::new(r.clone())),
            (None, None) => config = config.region(Region::new("us-east-1")),
            (None, Some(_)) => {}
        }
        Ok(Self {
            client: Client::from_conf(config.build()),
            bucket: location.bucket.clone(),
            prefix: location.prefix.clone(),
            rt,
            stats: StatsCounter::default(),
        })
    }

    fn key(&self, path: &str) -> String {
        match (self.prefix.is_empty(), path.is_empty()) {
            (true, _) => path.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{path}", self.prefix),
        }
    }

    /// The key prefix of the objects below `path` (`""` for the bucket root).
    fn dir_key(&self, path: &str) -> String {
        let k = self.key(path);
        if k.is_empty() {
            k
        } else {
            format!("{k}/")
        }
    }

    fn err(&self, action: &'static str, path: &str) -> impl FnOnce(BoxError) -> StorageError {
        let location = self.uri(path);
        move |source| StorageError {
            action,
            location,
            source,
        }
    }

    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), BoxError> {
        self.stats.request(bytes.len(), 0);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(bytes.to_vec()))
            .send()
            .await?;
        Ok(())
    }

    async fn put_multipart(&self, key: &str, bytes: &[u8]) -> Result<(), BoxError> {
        let upload_id = self.create_upload_at(key).await?;
        let parts = async {
            let mut etags = Vec::new();
            for (i, chunk) in bytes.chunks(PART_SIZE).enumerate() {
                etags.push(
                    self.upload_part_at(key, &upload_id, i as i32 + 1, chunk.to_vec())
                        .await?,
                );
            }
            self.complete_upload_at(key, &upload_id, &etags).await
        }
        .await;
        if parts.is_err() {
            let _ = self.abort_upload_at(key, &upload_id).await;
        }
        parts
    }

    async fn create_upload_at(&self, key: &str) -> Result<String, BoxError> {
        self.stats.request(0, 0);
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await?;
        Ok(upload
            .upload_id()
            .ok_or("S3 returned no upload id")?
            .to_string())
    }

    async fn upload_part_at(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        bytes: Vec<u8>,
    ) -> Result<String, BoxError> {
        self.stats.request(bytes.len(), 0);
        let part = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(bytes))
            .send()
            .await?;
        Ok(part
            .e_tag()
            .ok_or("S3 returned no ETag for a part")?
            .to_string())
    }

    async fn complete_upload_at(
        &self,
        key: &str,
        upload_id: &str,
        etags: &[String],
    ) -> Result<(), BoxError> {
        self.stats.request(0, 0);
        let parts = etags
            .iter()
            .enumerate()
            .map(|(i, etag)| {
                CompletedPart::builder()
                    .part_number(i as i32 + 1)
                    .e_tag(etag)
                    .build()
            })
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await?;
        Ok(())
    }

    async fn abort_upload_at(&self, key: &str, upload_id: &str) -> Result<(), BoxError> {
        self.stats.request(0, 0);
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_upload()) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// GETs an object, or with `range` (`bytes=a-b`) part of it.
    async fn get(&self, key: &str, range: Option<String>) -> Result<Option<Vec<u8>>, BoxError> {
        let resp = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_range(range)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                self.stats.request(0, 0);
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let bytes = resp.body.collect().await?.into_bytes().to_vec();
        self.stats.request(0, bytes.len());
        Ok(Some(bytes))
    }

    /// Keys (with `delimiter`: also common prefixes) under `prefix`, all pages.
    async fn list_keys(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
    ) -> Result<(Vec<String>, Vec<String>), BoxError> {
        let (keys, prefixes) = self.list_sized(prefix, delimiter).await?;
        Ok((keys.into_iter().map(|(k, _)| k).collect(), prefixes))
    }

    /// Keys with their sizes in bytes (with `delimiter`: also common prefixes) under `prefix`.
    #[allow(clippy::type_complexity)]
    async fn list_sized(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
    ) -> Result<(Vec<(String, u64)>, Vec<String>), BoxError> {
        let (mut keys, mut prefixes) = (Vec::new(), Vec::new());
        let mut token = None;
        loop {
            self.stats.request(0, 0);
            let resp = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_delimiter(delimiter.map(str::to_string))
                .set_continuation_token(token)
                .send()
                .await?;
            keys.extend(
                resp.contents().iter().filter_map(|o| {
                    Some((o.key()?.to_string(), o.size().unwrap_or(0).max(0) as u64))
                }),
            );
            prefixes.extend(
                resp.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_string)),
            );
            token = resp.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return Ok((keys, prefixes));
            }
        }
    }

    async fn delete_keys(&self, keys: &[String]) -> Result<(), BoxError> {
        for key in keys {
            self.stats.request(0, 0);
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await?;
        }
        Ok(())
    }
}

/// A multipart upload that has not been completed or aborted: invisible to readers until
/// completed (S3's `CreateMultipartUpload`, `UploadPart`, `CompleteMultipartUpload`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMultipartUpload {
    /// The object it will create, relative to the storage root.
    pub path: String,
    /// The store's id of the upload.
    pub upload_id: String,
}

/// Multipart uploads under the caller's control, for writers that make an object visible only
/// when a checkpoint completes (the exactly-once file sink, after Flink's S3 recoverable
/// writer). Every part but the last must be at least 5 MiB (S3's limit).
impl S3Storage {
    /// Starts a multipart upload of `path`; returns its upload id.
    ///
    /// # Errors
    /// [`StorageError`] when the store refuses or cannot be reached (after retries).
    pub fn create_upload(&self, path: &str) -> Result<String, StorageError> {
        self.rt
            .block_on(self.create_upload_at(&self.key(path)))
            .map_err(self.err("start upload of", path))
    }

    /// Uploads part `number` (1-based) of `upload_id`; returns its ETag, which completion needs.
    ///
    /// # Errors
    /// [`StorageError`] when the upload is unknown or the store cannot be reached.
    pub fn upload_part(
        &self,
        path: &str,
        upload_id: &str,
        number: i32,
        bytes: Vec<u8>,
    ) -> Result<String, StorageError> {
        self.rt
            .block_on(self.upload_part_at(&self.key(path), upload_id, number, bytes))
            .map_err(self.err("upload part of", path))
    }

    /// Completes `upload_id` with its parts' ETags in order: the object appears, whole. Not
    /// idempotent on every store: after an error, [`S3Storage::exists`] tells whether an
    /// earlier call completed it.
    ///
    /// # Errors
    /// [`StorageError`] when the upload is unknown (completed or aborted before, or expired),
    /// a part is missing or too small, or the store cannot be reached.
    pub fn complete_upload(
        &self,
        path: &str,
        upload_id: &str,
        etags: &[String],
    ) -> Result<(), StorageError> {
        self.rt
            .block_on(self.complete_upload_at(&self.key(path), upload_id, etags))
            .map_err(self.err("complete upload of", path))
    }

    /// Aborts `upload_id` and frees its parts; an upload the store no longer knows is not an
    /// error.
    ///
    /// # Errors
    /// [`StorageError`] when the store cannot be reached or refuses.
    pub fn abort_upload(&self, path: &str, upload_id: &str) -> Result<(), StorageError> {
        self.rt
            .block_on(self.abort_upload_at(&self.key(path), upload_id))
            .map_err(self.err("abort upload of", path))
    }

    /// Whether object `path` exists (a `HEAD` request).
    ///
    /// # Errors
    /// [`StorageError`] on failures other than absence.
    pub fn exists(&self, path: &str) -> Result<bool, StorageError> {
        let key = self.key(path);
        self.rt
            .block_on(async {
                self.stats.request(0, 0);
                match self
                    .client
                    .head_object()
                    .bucket(&self.bucket)
                    .key(&key)
                    .send()
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
                    Err(e) => Err(BoxError::from(e)),
                }
            })
            .map_err(self.err("look up", path))
    }

    /// The multipart uploads in progress below `prefix`, all pages; `None` when the store does
    /// not list uploads (it answers `NotImplemented`, as s3s-fs does).
    ///
    /// # Errors
    /// [`StorageError`] when the store cannot be reached or refuses otherwise.
    pub fn list_uploads(
        &self,
        prefix: &str,
    ) -> Result<Option<Vec<PendingMultipartUpload>>, StorageError> {
        let root = self.dir_key("");
        let dir = self.dir_key(prefix);
        self.rt
            .block_on(async {
                let mut found = Vec::new();
                let (mut key_marker, mut id_marker) = (None, None);
                loop {
                    self.stats.request(0, 0);
                    let resp = match self
                        .client
                        .list_multipart_uploads()
                        .bucket(&self.bucket)
                        .prefix(&dir)
                        .set_key_marker(key_marker)
                        .set_upload_id_marker(id_marker)
                        .send()
                        .await
                    {
                        Ok(r) => r,
                        Err(e)
                            if e.as_service_error()
                                .and_then(ProvideErrorMetadata::code)
                                .is_some_and(|c| c == "NotImplemented") =>
                        {
                            return Ok(None);
                        }
                        Err(e) => return Err(BoxError::from(e)),
                    };
                    found.extend(resp.uploads().iter().filter_map(|u| {
                        Some(PendingMultipartUpload {
                            path: u.key()?.strip_prefix(&root)?.to_string(),
                            upload_id: u.upload_id()?.to_string(),
                        })
                    }));
                    if resp.is_truncated() != Some(true) {
                        return Ok(Some(found));
                    }
                    key_marker = resp.next_key_marker().map(str::to_string);
                    id_marker = resp.next_upload_id_marker().map(str::to_string);
                }
            })
            .map_err(self.err("list uploads under", prefix))
    }
}

impl CheckpointStorage for S3Storage {
    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let key = self.key(path);
        let result = if bytes.len() > MULTIPART_THRESHOLD {
            self.rt.block_on(self.put_multipart(&key, bytes))
        } else {
            self.rt.block_on(self.put(&key, bytes))
        };
        result.map_err(self.err("write", path))
    }

    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.rt
            .block_on(self.get(&self.key(path), None))
            .map_err(self.err("read", path))
    }

    fn read_range(
        &self,
        path: &str,
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        if len == 0 {
            // Nothing to fetch (the needed key groups are empty).
            return Ok(Some(Vec::new()));
        }
        let range = format!("bytes={offset}-{}", offset + len - 1);
        self.rt
            .block_on(self.get(&self.key(path), Some(range)))
            .map_err(self.err("read", path))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let dir = self.dir_key(prefix);
        let (keys, prefixes) = self
            .rt
            .block_on(self.list_keys(&dir, Some("/")))
            .map_err(self.err("list", prefix))?;
        let mut names: Vec<String> = keys
            .iter()
            .chain(&prefixes)
            .filter_map(|k| k.strip_prefix(&dir))
            .map(|n| n.trim_end_matches('/').to_string())
            .filter(|n| !n.is_empty())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn list_objects(&self, prefix: &str) -> Result<Vec<(String, u64)>, StorageError> {
        let root = self.dir_key("");
        let (objects, _) = self
            .rt
            .block_on(self.list_sized(&self.dir_key(prefix), None))
            .map_err(self.err("list", prefix))?;
        let mut out: Vec<(String, u64)> = objects
            .into_iter()
            .filter_map(|(k, size)| Some((k.strip_prefix(&root)?.to_string(), size)))
            .collect();
        out.sort();
        Ok(out)
    }

    fn delete_all(&self, prefix: &str) -> Result<(), StorageError> {
        let key = self.key(prefix);
        self.rt
            .block_on(async {
                let (mut keys, _) = self.list_keys(&self.dir_key(prefix), None).await?;
                let (exact, _) = self.list_keys(&key, None).await?;
                keys.extend(exact.into_iter().filter(|k| *k == key));
                self.delete_keys(&keys).await
            })
            .map_err(self.err("delete", prefix))
    }

    fn uri(&self, path: &str) -> String {
        let uri = format!("s3://{}/{}", self.bucket, self.key(path));
        // A directory is named without a trailing slash, as users write it.
        uri.trim_end_matches('/').to_string()
    }

    fn stats(&self) -> StorageStats {
        self.stats.get()
    }
}
