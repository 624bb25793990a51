//! An exactly-once file sink (two-phase commit, after Flink's `FileSink`).
//!
//! Each subtask writes lines to an in-progress file `.part-<owner>-<seq>.inprogress` in the
//! output directory. At a checkpoint barrier it pre-commits: flushes, fsyncs and closes the
//! file and records it as pending in its state. When the checkpoint completes, pending files
//! are committed by an atomic rename to `part-<owner>-<seq>.csv`. On restore, the pending
//! files of the restored checkpoint are committed, and every file written after that
//! checkpoint (`seq` at or beyond the restored counter, committed or not) is deleted, so the
//! directory holds exactly the output of the restored state. The sink owns its directory: a
//! run without a checkpoint starts it empty of part files.
//!
//! With [`FileSink::with_buckets`] each record goes to a bucket, a subdirectory such as
//! `dt=2020-01-01/hm=00:05` (Flink's `BucketAssigner`), which holds its own part files; the
//! part sequence numbers of an owner run across all its buckets, so restore works the same.
//!
//! State (union-redistributed): one entry per owner index that ever wrote here,
//! `{"owner": j, "nextSeq": k, "pending": [[seq, checkpoint], ...]}`; after a rescale, new
//! subtask i adopts the owners with `j % parallelism == i`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use super::io_err;
use super::throttle::Throttle;
use crate::api::{
    CheckpointBarrier, Collector, OperatorListState, OperatorSnapshot, OperatorStateMap,
    RedistributionMode, Sink, TaskContext, TaskError, Timestamp,
};
use crate::metrics::JobMetrics;

const STATE: &str = "owners";

/// Encodes one record as one line (without the newline).
pub type LineEncoder<T> = Arc<dyn Fn(&T, &mut Vec<u8>) + Send + Sync>;

/// The bucket of a record: a relative path under the sink's directory (`""`: the directory
/// itself), made of normal components only (no `..`, not absolute).
pub type BucketAssigner<T> = Arc<dyn Fn(&T) -> String + Send + Sync>;

/// Writes records as lines to part files in a directory, exactly once.
pub struct FileSink<T> {
    dir: PathBuf,
    encode: LineEncoder<T>,
    buckets: Option<BucketAssigner<T>>,
    max_records_per_second: Option<u64>,
}

impl<T> FileSink<T> {
    /// A sink writing to `dir` (created when missing) with `encode` per record.
    pub fn new(dir: impl Into<PathBuf>, encode: LineEncoder<T>) -> Self {
        Self {
            dir: dir.into(),
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

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwnerState {
    owner: u32,
    next_seq: u64,
    /// (seq, checkpoint id whose barrier closed the file)
    pending: Vec<(u64, u64)>,
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
        std::fs::create_dir_all(&self.dir).map_err(io_err("create output directory", &self.dir))?;
        let mut owners: BTreeMap<u32, OwnerState> = BTreeMap::new();
        for v in restored.remove(STATE).unwrap_or_default() {
            let s: OwnerState = serde_json::from_value(v)
                .map_err(|e| TaskError::Restore(format!("sink `{uid}` state: {e}")))?;
            if s.owner % ctx.parallelism == ctx.subtask {
                owners.insert(s.owner, s);
            }
        }
        owners.entry(ctx.subtask).or_insert_with(|| OwnerState {
            owner: ctx.subtask,
            ..Default::default()
        });
        let mut writer = FileWriter {
            dir: self.dir.clone(),
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
    file: BufWriter<File>,
    records: u64,
}

struct FileWriter<T> {
    dir: PathBuf,
    encode: LineEncoder<T>,
    buckets: Option<BucketAssigner<T>>,
    subtask: u32,
    /// The sequence number of the next part file this writer opens.
    next_seq: u64,
    owners: BTreeMap<u32, OwnerState>,
    /// Open part files by bucket (`""`: the directory itself).
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
    fn walk(
        dir: &Path,
        bucket: &str,
        files: &mut Vec<(String, u32, u64, PathBuf)>,
    ) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type()?.is_dir() {
                let sub = if bucket.is_empty() {
                    name
                } else {
                    format!("{bucket}/{name}")
                };
                walk(&entry.path(), &sub, files)?;
            } else if let (Some((owner, seq)), false) =
                (parse_part_name(&name), name.starts_with('.'))
            {
                files.push((bucket.to_string(), owner, seq, entry.path()));
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, "", &mut files)?;
    files.sort();
    let mut lines = Vec::new();
    for (bucket, _, _, path) in files {
        for line in std::fs::read_to_string(path)?.lines() {
            lines.push(if bucket.is_empty() {
                line.to_string()
            } else {
                format!("{bucket}|{line}")
            });
        }
    }
    Ok(lines)
}

/// Every part file under `dir` (recursively): (owner, seq) -> its paths.
fn scan_parts(dir: &Path, found: &mut BTreeMap<(u32, u64), Vec<PathBuf>>) -> Result<(), TaskError> {
    let entries = std::fs::read_dir(dir).map_err(io_err("list output directory", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err("list output directory", dir))?;
        let path = entry.path();
        if entry
            .file_type()
            .map_err(io_err("list output directory", &path))?
            .is_dir()
        {
            scan_parts(&path, found)?;
        } else if let Some(id) = parse_part_name(&entry.file_name().to_string_lossy()) {
            found.entry(id).or_default().push(path);
        }
    }
    Ok(())
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
    fn commit_in(&self, bucket_dir: &Path, owner: u32, seq: u64) -> Result<(), TaskError> {
        let from = bucket_dir.join(in_progress_name(owner, seq));
        let to = bucket_dir.join(part_name(owner, seq));
        match std::fs::rename(&from, &to) {
            Ok(()) => Ok(()),
            Err(_) if to.exists() => Ok(()), // committed before a failure
            Err(e) => Err(io_err("commit part file", &from)(e)),
        }
    }

    /// Commits the restored pending files and deletes every file of the adopted owners (and
    /// of owners no checkpoint knows) that the restored state does not account for.
    fn recover(&mut self, parallelism: u32) -> Result<(), TaskError> {
        let mut found = BTreeMap::new();
        scan_parts(&self.dir, &mut found)?;
        for s in self.owners.values() {
            for (seq, _) in &s.pending {
                let in_progress = in_progress_name(s.owner, *seq);
                let file = found.get(&(s.owner, *seq)).and_then(|paths| {
                    paths
                        .iter()
                        .find(|p| p.file_name().is_some_and(|n| *n == *in_progress))
                });
                match file {
                    Some(path) => {
                        let bucket_dir = path.parent().unwrap_or(&self.dir).to_path_buf();
                        self.commit_in(&bucket_dir, s.owner, *seq)?;
                    }
                    // Committed before the failure, or lost: a lost pending file fails here.
                    None if found.contains_key(&(s.owner, *seq)) => {}
                    None => {
                        let path = self.dir.join(&in_progress);
                        return Err(io_err("commit part file", &path)(std::io::Error::from(
                            std::io::ErrorKind::NotFound,
                        )));
                    }
                }
            }
        }
        for o in self.owners.values_mut() {
            o.pending.clear();
        }
        found.clear();
        scan_parts(&self.dir, &mut found)?;
        for ((owner, seq), paths) in found {
            if owner % parallelism != self.subtask {
                continue;
            }
            for path in paths {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                let keep = self
                    .owners
                    .get(&owner)
                    .is_some_and(|o| seq < o.next_seq && !name.ends_with(".inprogress"));
                if !keep {
                    debug!(file = %path.display(), "removing output written after the restored checkpoint");
                    std::fs::remove_file(&path).map_err(io_err("remove stale part file", &path))?;
                }
            }
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
            let bucket_dir = self.dir.join(&bucket);
            std::fs::create_dir_all(&bucket_dir)
                .map_err(io_err("create bucket directory", &bucket_dir))?;
            let seq = self.next_seq;
            self.next_seq += 1;
            let path = bucket_dir.join(in_progress_name(self.subtask, seq));
            let f = File::create(&path).map_err(io_err("create part file", &path))?;
            let file = BufWriter::with_capacity(1 << 16, f);
            self.open.insert(
                bucket.clone(),
                OpenPart {
                    seq,
                    file,
                    records: 0,
                },
            );
        }
        self.line.clear();
        (self.encode)(&value, &mut self.line);
        self.line.push(b'\n');
        let part = self.open.get_mut(&bucket).expect("invariant: opened above");
        part.records += 1;
        if let Err(e) = part.file.write_all(&self.line) {
            let path = self
                .dir
                .join(&bucket)
                .join(in_progress_name(self.subtask, part.seq));
            return Err(io_err("write part file", &path)(e));
        }
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
        for (bucket, part) in std::mem::take(&mut self.open) {
            let path = self
                .dir
                .join(&bucket)
                .join(in_progress_name(self.subtask, part.seq));
            let f = part
                .file
                .into_inner()
                .map_err(|e| io_err("flush part file", &path)(e.into_error()))?;
            f.sync_all().map_err(io_err("sync part file", &path))?;
            self.own().pending.push((part.seq, id));
            self.located.insert(part.seq, bucket);
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
            self.commit_in(&self.dir.join(bucket), own, *seq)?;
        }
        if !ready.is_empty() {
            info!(
                checkpoint = id,
                subtask = own,
                files = ready.len(),
                "committed part files"
            );
        }
        self.own().pending.retain(|(_, c)| *c > id);
        Ok(())
    }

    fn end_of_input(&mut self) -> Result<(), TaskError> {
        // The final checkpoint's barrier follows the last record, so an open file is empty.
        for (bucket, part) in std::mem::take(&mut self.open) {
            let path = self
                .dir
                .join(&bucket)
                .join(in_progress_name(self.subtask, part.seq));
            if part.records == 0 {
                let _ = std::fs::remove_file(&path);
            } else {
                return Err(TaskError::Data(format!(
                    "{} records reached the sink after the final checkpoint; they are not committed",
                    part.records
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
}
