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

use super::throttle::Throttle;
use crate::api::{
    CheckpointBarrier, Collector, OperatorListState, OperatorSnapshot, OperatorStateMap,
    RedistributionMode, Sink, TaskContext, TaskError, Timestamp,
};
use crate::metrics::JobMetrics;

const STATE: &str = "owners";

/// Encodes one record as one line (without the newline).
pub type LineEncoder<T> = Arc<dyn Fn(&T, &mut Vec<u8>) + Send + Sync>;

/// Writes records as lines to part files in a directory, exactly once.
pub struct FileSink<T> {
    dir: PathBuf,
    encode: LineEncoder<T>,
    max_records_per_second: Option<u64>,
}

impl<T> FileSink<T> {
    /// A sink writing to `dir` (created when missing) with `encode` per record.
    pub fn new(dir: impl Into<PathBuf>, encode: LineEncoder<T>) -> Self {
        Self {
            dir: dir.into(),
            encode,
            max_records_per_second: None,
        }
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

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TaskError {
    let path = path.display().to_string();
    move |source| TaskError::Io {
        action,
        path,
        source,
    }
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
            subtask: ctx.subtask,
            owners,
            current: None,
            line: Vec::with_capacity(256),
            metrics: ctx.metrics.clone(),
            uid: uid.to_string(),
            throttle: Throttle::new(self.max_records_per_second),
        };
        writer.recover(ctx.parallelism)?;
        Ok(Box::new(writer))
    }
}

struct FileWriter<T> {
    dir: PathBuf,
    encode: LineEncoder<T>,
    subtask: u32,
    owners: BTreeMap<u32, OwnerState>,
    current: Option<(u64, BufWriter<File>, u64)>,
    line: Vec<u8>,
    metrics: Arc<JobMetrics>,
    uid: String,
    throttle: Throttle,
}

impl<T> FileWriter<T> {
    fn commit(&self, owner: u32, seq: u64) -> Result<(), TaskError> {
        let from = self.dir.join(in_progress_name(owner, seq));
        let to = self.dir.join(part_name(owner, seq));
        match std::fs::rename(&from, &to) {
            Ok(()) => Ok(()),
            Err(_) if to.exists() => Ok(()), // committed before a failure
            Err(e) => Err(io_err("commit part file", &from)(e)),
        }
    }

    /// Commits the restored pending files and deletes every file of the adopted owners (and
    /// of owners no checkpoint knows) that the restored state does not account for.
    fn recover(&mut self, parallelism: u32) -> Result<(), TaskError> {
        for s in self.owners.values() {
            for (seq, _) in &s.pending {
                self.commit(s.owner, *seq)?;
            }
        }
        for o in self.owners.values_mut() {
            o.pending.clear();
        }
        let entries =
            std::fs::read_dir(&self.dir).map_err(io_err("list output directory", &self.dir))?;
        for entry in entries {
            let entry = entry.map_err(io_err("list output directory", &self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((owner, seq)) = parse_part_name(&name) else {
                continue;
            };
            if owner % parallelism != self.subtask {
                continue;
            }
            let keep = self
                .owners
                .get(&owner)
                .is_some_and(|o| seq < o.next_seq && !name.ends_with(".inprogress"));
            if !keep {
                debug!(file = %name, "removing output written after the restored checkpoint");
                std::fs::remove_file(entry.path())
                    .map_err(io_err("remove stale part file", &entry.path()))?;
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
        if self.current.is_none() {
            let seq = self.own().next_seq;
            let path = self.dir.join(in_progress_name(self.subtask, seq));
            let f = File::create(&path).map_err(io_err("create part file", &path))?;
            self.current = Some((seq, BufWriter::with_capacity(1 << 16, f), 0));
        }
        self.line.clear();
        (self.encode)(&value, &mut self.line);
        self.line.push(b'\n');
        let (seq, w, n) = self.current.as_mut().expect("invariant: opened above");
        let seq = *seq;
        *n += 1;
        w.write_all(&self.line).map_err(|e| {
            io_err(
                "write part file",
                &self.dir.join(in_progress_name(self.subtask, seq)),
            )(e)
        })?;
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
        if let Some((seq, w, _)) = self.current.take() {
            let path = self.dir.join(in_progress_name(self.subtask, seq));
            let f = w
                .into_inner()
                .map_err(|e| io_err("flush part file", &path)(e.into_error()))?;
            f.sync_all().map_err(io_err("sync part file", &path))?;
            let own = self.own();
            own.pending.push((seq, id));
            own.next_seq = seq + 1;
        }
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
            self.commit(own, *seq)?;
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
        if let Some((seq, _, n)) = self.current.take() {
            let path = self.dir.join(in_progress_name(self.subtask, seq));
            if n == 0 {
                let _ = std::fs::remove_file(&path);
            } else {
                return Err(TaskError::Data(format!(
                    "{n} records reached the sink after the final checkpoint; they are not committed"
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
