//! The file sink's checkpointed state: one entry per owner index (the index of the subtask
//! that wrote the part files), union-redistributed so that after a rescale subtask `i` adopts
//! the owners with `owner % parallelism == i`.
//!
//! JSON per entry: `{"owner": j, "nextSeq": k, "pending": [[seq, checkpoint], ...]}`, plus
//! `"uploads": [{"seq", "path", "uploadId", "etags"}]` on object storage (absent for a
//! directory, so the state of earlier versions reads unchanged).

use serde::{Deserialize, Serialize};

/// What one owner index has written: the next part sequence number, and the part files
/// closed at a checkpoint barrier whose checkpoint has not completed yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OwnerState {
    pub owner: u32,
    /// The sequence number of the next part file; every part below it was written before the
    /// checkpoint this state belongs to.
    pub next_seq: u64,
    /// (seq, id of the checkpoint whose barrier closed the part file).
    pub pending: Vec<(u64, u64)>,
    /// The multipart uploads of the pending parts on object storage, one per pending seq.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uploads: Vec<UploadRecord>,
}

impl OwnerState {
    /// A new owner that has written nothing.
    pub fn empty(owner: u32) -> Self {
        Self {
            owner,
            ..Default::default()
        }
    }

    /// The recorded upload of pending part `seq`, if it went to object storage.
    pub fn upload(&self, seq: u64) -> Option<&UploadRecord> {
        self.uploads.iter().find(|u| u.seq == seq)
    }

    /// Forgets the pending parts closed at checkpoints up to `id` (they are committed).
    pub fn committed_up_to(&mut self, id: u64) {
        self.pending.retain(|(_, c)| *c > id);
        let pending = &self.pending;
        self.uploads
            .retain(|u| pending.iter().any(|(seq, _)| *seq == u.seq));
    }
}

/// A closed part file on object storage: a multipart upload with all its parts, which
/// completing makes visible (Flink's `CommitRecoverable` of the S3 writer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UploadRecord {
    /// The part's sequence number.
    pub seq: u64,
    /// The object the upload creates, relative to the sink's prefix
    /// (`dt=2020-01-01/part-0-000003.csv`).
    pub path: String,
    /// The store's upload id.
    pub upload_id: String,
    /// The ETags of its parts, in part order.
    pub etags: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_of_a_directory_sink_reads_and_writes_as_before() {
        let old = r#"{"owner":1,"nextSeq":4,"pending":[[3,7]]}"#;
        let s: OwnerState = serde_json::from_str(old).unwrap();
        assert_eq!(s.pending, vec![(3, 7)]);
        assert_eq!(serde_json::to_string(&s).unwrap(), old);
    }

    #[test]
    fn completing_a_checkpoint_forgets_its_uploads_only() {
        let record = |seq| UploadRecord {
            seq,
            path: format!("part-0-{seq:06}.csv"),
            upload_id: format!("u{seq}"),
            etags: vec!["e".into()],
        };
        let mut s = OwnerState {
            owner: 0,
            next_seq: 3,
            pending: vec![(1, 5), (2, 6)],
            uploads: vec![record(1), record(2)],
        };
        s.committed_up_to(5);
        assert_eq!(s.pending, vec![(2, 6)]);
        assert_eq!(s.uploads, vec![record(2)]);
    }
}
