//! An exactly-once file sink (two-phase commit, after Flink's `FileSink`), writing to a
//! directory or to object storage.
//!
//! Each subtask writes lines to in-progress part files. At a checkpoint barrier it
//! pre-commits: in a directory it flushes, fsyncs and closes `.part-<owner>-<seq>.inprogress`;
//! on object storage (`s3://bucket/prefix`) it uploads the last part of the multipart upload
//! of `part-<owner>-<seq>.csv` (earlier parts went up as records arrived, 8 MiB each). The
//! part is recorded as pending in the checkpoint, with its upload id and part ETags on
//! object storage. When the checkpoint completes, pending parts are committed: an atomic
//! rename to `part-<owner>-<seq>.csv`, or completing the upload, which makes the object
//! appear whole. Readers never see a part whose checkpoint did not complete.
//!
//! On restore, the pending parts of the restored checkpoint are committed (idempotently: a
//! part committed before the failure stays as it is), and every part written after that
//! checkpoint (`seq` at or beyond the restored counter, committed or not) is deleted, and its
//! uploads aborted where the store lists uploads (AWS S3, MinIO, Garage; s3s-fs does not:
//! there an upload begun after the checkpoint stays invisible until the bucket's
//! `AbortIncompleteMultipartUpload` lifecycle rule removes it, as Flink's documentation
//! advises). So the location holds exactly the output of the restored state. The sink owns
//! its location: a run without a checkpoint starts it empty of part files.
//!
//! With [`FileSink::with_buckets`] each record goes to a bucket, a subdirectory such as
//! `dt=2020-01-01/hm=00:05` (Flink's `BucketAssigner`), which holds its own part files; the
//! part sequence numbers of an owner run across all its buckets, so restore works the same.
//!
//! State: see `state.rs` (one union-redistributed entry per owner index; after a rescale, new
//! subtask i adopts the owners with `j % parallelism == i`).

mod parts;
mod recovery;
mod state;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::info;
use weir_crds::StorageLocation;

use self::parts::{InProgress, PartStore};
use self::recovery::RecoveryStep;
use self::state::OwnerState;
use super::throttle::Throttle;
use crate::api::{
    CheckpointBarrier, Collector, OperatorListState, OperatorSnapshot, OperatorStateMap,
    RedistributionMode, Sink, TaskContext, TaskError, Timestamp,
};
use crate::metrics::JobMetrics;
use crate::storage::{CheckpointStorage, LocalStorage, StorageError};

const STATE: &str = "owners";

/// Encodes one record as one line (without the newline).
pub type LineEncoder<T> = Arc<dyn Fn(&T, &mut Vec<u8>) + Send + Sync>;

/// The bucket of a record: a relative path under the sink's directory (`""`: the directory
/// itself), made of normal components only (no `..`, not absolute).
pub type BucketAssigner<T> = Arc<dyn Fn(&T) -> String + Send + Sync>;

/// Where a [`FileSink`] writes. The sink owns the location: it deletes part files there
/// that its restored state does not account for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputLocation {
    /// A local or mounted directory, created when missing.
    Directory(PathBuf),
    /// `s3://bucket/prefix`: objects reached with the job's `checkpointing.s3` settings
    /// (endpoint, region, path style) and the standard AWS credential chain, so on
    /// Kubernetes with the same credentials as the checkpoints.
    ObjectStore {
        /// Bucket name.
        bucket: String,
        /// Key prefix, without leading or trailing `/`; never empty.
        prefix: String,
    },
}

impl OutputLocation {
    /// Parses an output argument: `s3://bucket/prefix`, `file:///absolute/dir`, or a path.
    ///
    /// # Errors
    /// A message naming the allowed forms for an unsupported scheme, an invalid bucket name,
    /// a relative `file://` path, or an `s3://` location without a prefix (the sink owns
    /// what is under it, so it does not take a whole bucket).
    pub fn parse(output: &str) -> Result<Self, String> {
        if !output.contains("://") {
            return Ok(Self::Directory(PathBuf::from(output)));
        }
        match StorageLocation::parse(output)? {
            StorageLocation::Local(dir) => Ok(Self::Directory(dir)),
            StorageLocation::S3(l) if l.prefix.is_empty() => Err(format!(
                "`{output}` names a whole bucket; name a prefix the sink owns, as in s3://{}/output/my-job",
                l.bucket
            )),
            StorageLocation::S3(l) => Ok(Self::ObjectStore {
                bucket: l.bucket,
                prefix: l.prefix,
            }),
        }
    }
}

impl std::fmt::Display for OutputLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Directory(d) => write!(f, "{}", d.display()),
            Self::ObjectStore { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

impl From<PathBuf> for OutputLocation {
    fn from(dir: PathBuf) -> Self {
        Self::Directory(dir)
    }
}

impl From<&Path> for OutputLocation {
    fn from(dir: &Path) -> Self {
        Self::Directory(dir.to_path_buf())
    }
}

impl From<&PathBuf> for OutputLocation {
    fn from(dir: &PathBuf) -> Self {
        Self::Directory(dir.clone())
    }
}

/// Writes records as lines to part files in a directory or under an object store prefix,
/// exactly once.
pub struct FileSink<T> {
    location: OutputLocation,
    encode: LineEncoder<T>,
    buckets: Option<BucketAssigner<T>>,
    max_records_per_second: Option<u64>,
}

impl<T> FileSink<T> {
    /// A sink writing to `location` (a directory path, or an [`OutputLocation`] parsed from
    /// `s3://bucket/prefix`) with `encode` per record.
    pub fn new(location: impl Into<OutputLocation>, encode: LineEncoder<T>) -> Self {
        Self {
            location: location.into(),
            encode,
            buckets: None,
            max_records_per_second: None,
        }
    }

    /// Writes each record into the bucket (subdirectory) `assign` gives it; a bucket that is
    /// not a relative path of normal components fails the record with [`TaskError::Data`].
    pub fn with_buckets(mut self, assign: BucketAssigner<T>) -> Self {
        self.buckets = Some(assign);
        self
    }

    /// Limits each writer to `rate` records/s (`None`: unlimited), to simulate a slow
    /// consumer in demos and benchmarks.
    pub fn with_max_records_per_second(mut self, rate: Option<u64>) -> Self {
        self.max_records_per_second = rate;
        self
    }
}

/// Committed part file name of `owner`'s `seq`.
pub fn part_name(owner: u32, seq: u64) -> String {
    format!("part-{owner}-{seq:06}.csv")
}

fn in_progress_name(owner: u32, seq: u64) -> String {
    format!(".part-{owner}-{seq:06}.inprogress")
}

/// (owner, seq) of a committed or in-progress part file name.
fn parse_part_name(name: &str) -> Option<(u32, u64)> {
    let body = name
        .strip_prefix("part-")
        .and_then(|n| n.strip_suffix(".csv"))
        .or_else(|| {
            name.strip_prefix(".part-")
                .and_then(|n| n.strip_suffix(".inprogress"))
        })?;
    let (owner, seq) = body.split_once('-')?;
    Some((owner.parse().ok()?, seq.parse().ok()?))
}

impl<T: Send + 'static> Sink<T> for FileSink<T> {
    fn create_writer(
        &self,
        ctx: &TaskContext,
        uid: &str,
        mut restored: OperatorStateMap,
    ) -> Result<Box<dyn Collector<T>>, TaskError> {
        let store = PartStore::open(&self.location, ctx.s3.as_ref())?;
        let mut owners: BTreeMap<u32, OwnerState> = BTreeMap::new();
        for v in restored.remove(STATE).unwrap_or_default() {
            let s: OwnerState = serde_json::from_value(v)
                .map_err(|e| TaskError::Restore(format!("sink `{uid}` state: {e}")))?;
            if s.owner % ctx.parallelism == ctx.subtask {
                owners.insert(s.owner, s);
            }
        }
        owners
            .entry(ctx.subtask)
            .or_insert_with(|| OwnerState::empty(ctx.subtask));
        let mut writer = FileWriter {
            store,
            encode: self.encode.clone(),
            buckets: self.buckets.clone(),
            subtask: ctx.subtask,
            next_seq: 0,
            owners,
            open: BTreeMap::new(),
            located: BTreeMap::new(),
            line: Vec::with_capacity(256),
            metrics: ctx.metrics.clone(),
            uid: uid.to_string(),
            throttle: Throttle::new(self.max_records_per_second),
        };
        writer.recover(ctx.parallelism)?;
        writer.next_seq = writer.own().next_seq;
        Ok(Box::new(writer))
    }
}

/// A part file being written: its sequence number, writer and record count.
struct OpenPart {
    seq: u64,
    part: InProgress,
    records: u64,
}

struct FileWriter<T> {
    store: PartStore,
    encode: LineEncoder<T>,
    buckets: Option<BucketAssigner<T>>,
    subtask: u32,
    /// The sequence number of the next part file this writer opens.
    next_seq: u64,
    owners: BTreeMap<u32, OwnerState>,
    /// Open part files by bucket (`""`: the location itself).
    open: BTreeMap<String, OpenPart>,
    /// The bucket of each pending part file of this writer, by sequence number.
    located: BTreeMap<u64, String>,
    line: Vec<u8>,
    metrics: Arc<JobMetrics>,
    uid: String,
    throttle: Throttle,
}

/// The lines of the committed part files under a sink's directory `dir`, in the order they were
/// written: by bucket, then by owner (the writing subtask's index) and sequence number, each
/// file's lines in order. Lines of a bucket are prefixed with its path and `|`
/// (`dt=2020-01-01/hm=00:00|...`). For readers of a finished job's output (tests, benchmarks):
/// the lines of one key, written by one subtask at one parallelism, keep their order.
///
/// # Errors
/// I/O errors listing `dir` or reading a part file.
pub fn committed_lines(dir: &Path) -> std::io::Result<Vec<String>> {
    std::fs::read_dir(dir)?;
    committed_lines_in(&LocalStorage::new(dir.to_path_buf())).map_err(std::io::Error::other)
}

/// [`committed_lines`] of a sink's location opened as `storage` (its root: the directory, or
/// an [`crate::storage::S3Storage`] on the sink's bucket and prefix).
///
/// # Errors
/// [`StorageError`] listing the location or reading a part.
pub fn committed_lines_in(storage: &dyn CheckpointStorage) -> Result<Vec<String>, StorageError> {
    let mut files: Vec<(String, u32, u64, String)> = storage
        .list_objects("")?
        .into_iter()
        .filter_map(|(path, _)| {
            let (bucket, name) = path.rsplit_once('/').unwrap_or(("", &path));
            let (owner, seq) = parse_part_name(name).filter(|_| !name.starts_with('.'))?;
            Some((bucket.to_string(), owner, seq, path.clone()))
        })
        .collect();
    files.sort();
    let mut lines = Vec::new();
    for (bucket, _, _, path) in files {
        let bytes = storage.read(&path)?.unwrap_or_default();
        for line in String::from_utf8_lossy(&bytes).lines() {
            lines.push(if bucket.is_empty() {
                line.to_string()
            } else {
                format!("{bucket}|{line}")
            });
        }
    }
    Ok(lines)
}

/// `bucket` checked to be a relative path of normal components.
fn checked_bucket(bucket: String) -> Result<String, TaskError> {
    let ok = Path::new(&bucket)
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if ok {
        Ok(bucket)
    } else {
        Err(TaskError::Data(format!(
            "bucket `{bucket}` is not a relative path of plain directory names"
        )))
    }
}

impl<T> FileWriter<T> {
    /// Commits the restored pending parts and removes every part of the adopted owners (and
    /// of owners no checkpoint knows) that the restored state does not account for.
    fn recover(&mut self, parallelism: u32) -> Result<(), TaskError> {
        let found = self.store.scan()?;
        for step in recovery::plan(&self.owners, &found, parallelism, self.subtask) {
            match step {
                RecoveryStep::Commit { owner, seq, found } => {
                    let upload = self.owners.get(&owner).and_then(|o| o.upload(seq));
                    if found.is_none() && upload.is_none() {
                        // A directory's pending file is neither in progress nor committed.
                        return Err(TaskError::Restore(format!(
                            "pending part file {} of sink `{}` is lost from its output location",
                            in_progress_name(owner, seq),
                            self.uid
                        )));
                    }
                    let bucket = found
                        .as_ref()
                        .and_then(|f| f.path.rsplit_once('/'))
                        .map_or("", |(bucket, _)| bucket);
                    self.store.commit(owner, seq, bucket, upload)?;
                }
                RecoveryStep::Remove(part) => self.store.remove(&part)?,
            }
        }
        for o in self.owners.values_mut() {
            o.pending.clear();
            o.uploads.clear();
        }
        Ok(())
    }

    fn own(&mut self) -> &mut OwnerState {
        self.owners
            .get_mut(&self.subtask)
            .expect("invariant: a writer always owns its own index")
    }
}

impl<T: Send> Collector<T> for FileWriter<T> {
    fn record(&mut self, _ts: Timestamp, value: T) -> Result<(), TaskError> {
        let bucket = match &self.buckets {
            Some(assign) => assign(&value),
            None => String::new(),
        };
        if !self.open.contains_key(&bucket) {
            let bucket = checked_bucket(bucket.clone())?;
            let seq = self.next_seq;
            self.next_seq += 1;
            let part = self.store.start(&bucket, self.subtask, seq)?;
            self.open.insert(
                bucket,
                OpenPart {
                    seq,
                    part,
                    records: 0,
                },
            );
        }
        self.line.clear();
        (self.encode)(&value, &mut self.line);
        self.line.push(b'\n');
        let open = self.open.get_mut(&bucket).expect("invariant: opened above");
        open.records += 1;
        self.store.write(&mut open.part, &self.line)?;
        self.metrics.add_out(self.subtask, 1);
        self.throttle.pass(1);
        Ok(())
    }

    fn watermark(&mut self, _watermark: Timestamp) -> Result<(), TaskError> {
        Ok(())
    }

    fn checkpoint(
        &mut self,
        barrier: CheckpointBarrier,
        out: &mut Vec<OperatorSnapshot>,
    ) -> Result<(), TaskError> {
        let id = barrier.id;
        for (bucket, open) in std::mem::take(&mut self.open) {
            let upload = self.store.close(open.seq, open.part)?;
            let own = self.own();
            own.pending.push((open.seq, id));
            own.uploads.extend(upload);
            self.located.insert(open.seq, bucket);
        }
        let next_seq = self.next_seq;
        self.own().next_seq = next_seq;
        let entries = self
            .owners
            .values()
            .map(|o| serde_json::to_value(o).expect("invariant: sink state serializes"))
            .collect();
        let mut operator_state = BTreeMap::new();
        operator_state.insert(
            STATE.to_string(),
            OperatorListState {
                mode: RedistributionMode::Union,
                entries,
            },
        );
        out.push(OperatorSnapshot {
            uid: self.uid.clone(),
            keyed: None,
            operator_state,
        });
        Ok(())
    }

    fn checkpoint_complete(&mut self, id: u64) -> Result<(), TaskError> {
        let own = self.subtask;
        let ready: Vec<u64> = self.owners[&own]
            .pending
            .iter()
            .filter(|(_, c)| *c <= id)
            .map(|(s, _)| *s)
            .collect();
        for seq in &ready {
            let bucket = self.located.remove(seq).unwrap_or_default();
            self.store
                .commit(own, *seq, &bucket, self.owners[&own].upload(*seq))?;
        }
        if !ready.is_empty() {
            info!(
                checkpoint = id,
                subtask = own,
                files = ready.len(),
                "committed part files"
            );
        }
        self.own().committed_up_to(id);
        Ok(())
    }

    fn end_of_input(&mut self) -> Result<(), TaskError> {
        // The final checkpoint's barrier follows the last record, so an open part is empty.
        for (_, open) in std::mem::take(&mut self.open) {
            if open.records == 0 {
                self.store.discard(open.part);
            } else {
                return Err(TaskError::Data(format!(
                    "{} records reached the sink after the final checkpoint; they are not committed",
                    open.records
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_roundtrip() {
        assert_eq!(parse_part_name(&part_name(3, 17)), Some((3, 17)));
        assert_eq!(parse_part_name(&in_progress_name(0, 2)), Some((0, 2)));
        assert_eq!(parse_part_name("other.csv"), None);
    }

    #[test]
    fn output_locations_parse() {
        assert_eq!(
            OutputLocation::parse("/data/out").unwrap(),
            OutputLocation::Directory("/data/out".into())
        );
        assert_eq!(
            OutputLocation::parse("file:///data/out").unwrap(),
            OutputLocation::Directory("/data/out".into())
        );
        let s3 = OutputLocation::parse("s3://weir/output/job/").unwrap();
        assert_eq!(
            s3,
            OutputLocation::ObjectStore {
                bucket: "weir".into(),
                prefix: "output/job".into()
            }
        );
        assert_eq!(s3.to_string(), "s3://weir/output/job");
        assert!(OutputLocation::parse("s3://weir")
            .unwrap_err()
            .contains("prefix"));
        assert!(OutputLocation::parse("s3://Bad_Bucket/x").is_err());
        assert!(OutputLocation::parse("gs://b/x")
            .unwrap_err()
            .contains("s3://"));
    }
}
