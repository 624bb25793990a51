//! A replayable CSV source over plain or gzip-compressed files. Files are dealt to subtasks
//! round-robin (file `f` to subtask `f % parallelism`); each file is a split with its own
//! watermark (see [`SourceReader::splits`]): a subtask reads its files in turns, one batch
//! from each, and its watermark is the smallest over its unfinished files, so a file whose
//! timestamps lag another's is not dropped as late. Its position per file (bytes of
//! decompressed input consumed) is operator state, union redistributed, so a restored job
//! resumes each file exactly after the last checkpointed record: plain files by seeking, gzip
//! files by decompressing and skipping. A record that does not parse is counted (the
//! `invalid records` metric) and set aside in the dead-letter file, if one is configured; it
//! never fails the job.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::io_err;
use super::throttle::Throttle;
use crate::api::{Source, SourceReader, SplitStatus, TaskContext, TaskError};

/// Parses one CSV record into a `T`; `Err` is a message naming the field and the problem.
pub type RecordParser<T> = Arc<dyn Fn(&csv::ByteRecord) -> Result<T, String> + Send + Sync>;

/// Settings of a [`CsvSource`].
#[derive(Debug, Clone)]
pub struct CsvSourceConfig {
    /// Input files, in reading order.
    pub files: Vec<PathBuf>,
    /// True when every file starts with a header row (skipped).
    pub has_header: bool,
    /// Field delimiter.
    pub delimiter: u8,
    /// Upper bound on records per second per subtask (None = unbounded).
    pub max_records_per_second: Option<u64>,
    /// A file that receives each record that does not parse, as a JSON line (`file`,
    /// `record` number, `line`, `error`, `fields`), written before each checkpoint (at least
    /// once: a restored job appends the bad records it reads again). Subtask `i` writes
    /// `<file>.<i>`. Without it, such records are counted and dropped; either way they never
    /// fail the job.
    pub dead_letter: Option<PathBuf>,
}

/// Reads records of type `T` from CSV files.
pub struct CsvSource<T> {
    config: CsvSourceConfig,
    parse: RecordParser<T>,
}

impl<T> CsvSource<T> {
    /// A source over `config.files`, parsing each record with `parse`.
    pub fn new(config: CsvSourceConfig, parse: RecordParser<T>) -> Self {
        Self { config, parse }
    }
}

/// Position in one file, stored in operator state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilePosition {
    file: String,
    /// Bytes of (decompressed) input consumed, header included.
    offset: u64,
    /// Data lines consumed.
    records: u64,
    done: bool,
}

/// Opens `path` (gzip when it ends in `.gz`) and returns a reader positioned at `offset`
/// bytes of decompressed content.
///
/// # Errors
/// [`TaskError::Io`] when the file cannot be opened or is shorter than `offset`.
pub fn open_at(path: &Path, offset: u64) -> Result<Box<dyn BufRead + Send>, TaskError> {
    let io = |action| io_err(action, path);
    let mut file = File::open(path).map_err(io("open input"))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut r: Box<dyn BufRead + Send> = Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 16, file)),
        ));
        let skipped = std::io::copy(&mut (&mut r).take(offset), &mut std::io::sink())
            .map_err(io("skip to position in"))?;
        if skipped != offset {
            return Err(TaskError::Restore(format!(
                "{} is shorter ({skipped} bytes) than its restored position ({offset} bytes); did the input change?",
                path.display()
            )));
        }
        Ok(r)
    } else {
        file.seek(SeekFrom::Start(offset)).map_err(io("seek in"))?;
        Ok(Box::new(BufReader::with_capacity(1 << 20, file)))
    }
}

impl<T: Send + 'static> Source<T> for CsvSource<T> {
    fn create_reader(
        &self,
        ctx: &TaskContext,
        positions: Vec<serde_json::Value>,
    ) -> Result<Box<dyn SourceReader<T>>, TaskError> {
        let restored: Vec<FilePosition> = positions
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<_, _>>()
            .map_err(|e| TaskError::Restore(format!("csv source position: {e}")))?;
        let files: Vec<FilePosition> = self
            .config
            .files
            .iter()
            .enumerate()
            .filter(|(i, _)| *i as u32 % ctx.parallelism == ctx.subtask)
            .map(|(_, f)| {
                let name = f.display().to_string();
                restored
                    .iter()
                    .find(|p| p.file == name)
                    .cloned()
                    .unwrap_or(FilePosition {
                        file: name,
                        offset: 0,
                        records: 0,
                        done: false,
                    })
            })
            .collect();
        Ok(Box::new(CsvReader {
            config: self.config.clone(),
            parse: self.parse.clone(),
            open: files.iter().map(|_| None).collect(),
            files,
            current: 0,
            last: None,
            record: csv::ByteRecord::new(),
            throttle: Throttle::new(self.config.max_records_per_second),
            invalid: 0,
            dead_letters: Vec::new(),
            dead_letter_path: self
                .config
                .dead_letter
                .as_ref()
                .map(|p| PathBuf::from(format!("{}.{}", p.display(), ctx.subtask))),
        }))
    }
}

struct OpenFile {
    reader: csv::Reader<Box<dyn BufRead + Send>>,
    base_offset: u64,
}

struct CsvReader<T> {
    config: CsvSourceConfig,
    parse: RecordParser<T>,
    files: Vec<FilePosition>,
    /// The file the next batch comes from.
    current: usize,
    /// The file the last batch came from.
    last: Option<usize>,
    /// The open reader of each file (opened on its first turn, closed at its end).
    open: Vec<Option<OpenFile>>,
    record: csv::ByteRecord,
    throttle: Throttle,
    /// Records that did not parse since the last report.
    invalid: u64,
    /// Dead letters (JSON lines) not yet written.
    dead_letters: Vec<u8>,
    dead_letter_path: Option<PathBuf>,
}

impl<T> CsvReader<T> {
    fn open_current(&mut self) -> Result<(), TaskError> {
        let pos = &mut self.files[self.current];
        debug_assert!(self.open[self.current].is_none());
        let path = PathBuf::from(&pos.file);
        let inner = open_at(&path, pos.offset)?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(self.config.delimiter)
            .from_reader(inner);
        let mut base_offset = pos.offset;
        if self.config.has_header && pos.offset == 0 {
            let mut header = csv::ByteRecord::new();
            reader
                .read_byte_record(&mut header)
                .map_err(|e| csv_error(&pos.file, e))?;
            pos.offset = reader.position().byte();
            base_offset = 0;
        }
        self.open[self.current] = Some(OpenFile {
            reader,
            base_offset,
        });
        Ok(())
    }

    fn throttle(&mut self, n: u64) {
        self.throttle.pass(n);
    }
}

fn csv_error(file: &str, e: csv::Error) -> TaskError {
    match e.into_kind() {
        csv::ErrorKind::Io(source) => TaskError::Io {
            action: "read input",
            path: file.to_string(),
            source,
        },
        other => TaskError::Data(format!("{file}: malformed CSV: {other:?}")),
    }
}

impl<T: Send> SourceReader<T> for CsvReader<T> {
    /// Appends up to `max` records of one file (the next unfinished one in turn) to `out`.
    fn read_batch(&mut self, out: &mut Vec<T>, max: usize) -> Result<bool, TaskError> {
        let start_len = out.len();
        self.last = None;
        let n = self.files.len();
        // The next unfinished file, in turn after the last one read.
        let Some(current) = (0..n)
            .map(|i| (self.current + i) % n)
            .find(|&f| !self.files[f].done)
        else {
            return Ok(false);
        };
        self.current = current;
        if self.open[current].is_none() {
            self.open_current()?;
        }
        self.last = Some(current);
        let open = self.open[current]
            .as_mut()
            .expect("invariant: opened above");
        let pos = &mut self.files[current];
        while out.len() - start_len < max {
            let more = open
                .reader
                .read_byte_record(&mut self.record)
                .map_err(|e| csv_error(&pos.file, e))?;
            if !more {
                pos.done = true;
                self.open[current] = None;
                break;
            }
            pos.offset = open.base_offset + open.reader.position().byte();
            pos.records += 1;
            match (self.parse)(&self.record) {
                Ok(value) => out.push(value),
                Err(error) => {
                    // Counted and set aside; it never fails the job.
                    self.invalid += 1;
                    let line = self.record.position().map(|p| p.line()).unwrap_or(0);
                    if self.dead_letter_path.is_some() {
                        let fields: Vec<String> = self
                            .record
                            .iter()
                            .map(|f| String::from_utf8_lossy(f).into_owned())
                            .collect();
                        let entry = serde_json::json!({
                            "file": pos.file,
                            "record": pos.records,
                            "line": line,
                            "error": error,
                            "fields": fields,
                        });
                        serde_json::to_writer(&mut self.dead_letters, &entry)
                            .expect("invariant: a JSON value serializes");
                        self.dead_letters.push(b'\n');
                    } else if self.invalid <= 10 || self.invalid.is_power_of_two() {
                        tracing::warn!(file = %pos.file, record = pos.records, error, invalid = self.invalid, "CSV record does not parse; dropped (no dead-letter file)");
                    }
                }
            }
        }
        self.current = (current + 1) % n;
        self.throttle((out.len() - start_len) as u64);
        Ok(self.files.iter().any(|f| !f.done))
    }

    fn prepare_checkpoint(&mut self, _checkpoint_id: u64) -> Result<(), TaskError> {
        let Some(path) = &self.dead_letter_path else {
            return Ok(());
        };
        if self.dead_letters.is_empty() {
            return Ok(());
        }
        let io = |action| io_err(action, path);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io("open dead-letter file"))?;
        std::io::Write::write_all(&mut f, &self.dead_letters)
            .map_err(io("write dead-letter file"))?;
        f.sync_all().map_err(io("sync dead-letter file"))?;
        self.dead_letters.clear();
        Ok(())
    }

    fn take_invalid_records(&mut self) -> u64 {
        std::mem::take(&mut self.invalid)
    }

    fn positions(&self) -> Vec<serde_json::Value> {
        self.files
            .iter()
            .map(|p| serde_json::to_value(p).expect("invariant: positions serialize"))
            .collect()
    }

    fn splits(&self) -> Vec<SplitStatus> {
        self.files
            .iter()
            .map(|f| SplitStatus {
                id: f.file.clone(),
                ended: f.done,
            })
            .collect()
    }

    fn last_split(&self) -> Option<&str> {
        self.last.map(|f| self.files[f].file.as_str())
    }
}
