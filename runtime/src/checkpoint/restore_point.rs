//! Which snapshot a job restores: one rule for `weir run` and `weir coordinator`. Pure; the
//! runner reads storage, asks [`RestoreRequest::decide`], and does what the decision says.
//!
//! A job's checkpoints form a *lineage*: the run that wrote them and its restarts. A
//! savepoint restore starts a new lineage (the checkpoints of the old one hold state from
//! before the savepoint's restore and must never be picked up again), and a restart of the
//! same lineage resumes its own latest checkpoint, never the savepoint it began with (which
//! may have been disposed of since). The lineage is stored at `<job>/_lineage`. The operator
//! names one per deployment (`--lineage`); without one, an explicit savepoint names it
//! (`savepoint:<uri>`), so re-running the same `weir run --from-savepoint` command after a
//! crash resumes where the crashed run was, as a Kubernetes restart of that pod would.
//!
//! Flink's `flink run -s` always restores the savepoint; its Kubernetes operator restores the
//! latest checkpoint of a running deployment. This rule gives both commands the operator's
//! behaviour.

/// What a run was asked to restore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreRequest {
    /// `--from-savepoint`: a savepoint (or retained checkpoint) directory URI.
    pub savepoint: Option<String>,
    /// The manifest's `spec.restore` savepoint (or `job.initialSavepointPath`): restored when
    /// the job has nothing newer.
    pub initial_savepoint: Option<String>,
    /// `--lineage`: the deployment this run belongs to.
    pub lineage: Option<String>,
    /// `--fresh`: delete the job's checkpoints first (ignored by a restart of the lineage
    /// named with `--lineage`, so that a restarted pod never wipes its own checkpoints, and
    /// when the storage root holds another owner's lineage, whose objects stay).
    pub fresh: bool,
    /// The manifest's `metadata.uid`: the StreamJob this run belongs to (`None` for `weir
    /// run`, which has no owner and never refuses a stored lineage).
    pub owner: Option<String>,
    /// `spec.restore: latest-checkpoint`: take over the stored lineage and its latest
    /// checkpoint even when another owner wrote it.
    pub adopt: bool,
}

/// The record stored at `<job>/_lineage`: whose checkpoints the job root holds.
///
/// Stored as JSON (`{"deployment": .., "owner": .., "firstCheckpoint": ..}`); a record written
/// before owners existed is the deployment id as plain text and reads as one without an owner
/// whose history starts at checkpoint 0.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineageRecord {
    /// The deployment (`--lineage`, `savepoint:<uri>`, or empty when the run named none).
    pub deployment: String,
    /// The StreamJob UID that wrote it; `None` for `weir run` and for records written before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The lowest checkpoint id of the lineage's history. Checkpoints below it in the same
    /// root belong to a predecessor (another owner): never restored, listed by `weir
    /// checkpoints gc --dry-run`.
    #[serde(default)]
    pub first_checkpoint: u64,
}

impl LineageRecord {
    /// The stored form (JSON).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("invariant: a lineage record serializes")
    }

    /// Reads a stored record: JSON, else (written before owners) the plain deployment id.
    pub fn decode(bytes: &[u8]) -> Self {
        serde_json::from_slice(bytes).unwrap_or_else(|_| LineageRecord {
            deployment: String::from_utf8_lossy(bytes).trim().to_string(),
            owner: None,
            first_checkpoint: 0,
        })
    }
}

/// The snapshot to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreChoice {
    /// The job's latest complete checkpoint (of the stored lineage's history).
    LatestCheckpoint,
    /// The savepoint in this directory.
    Savepoint(String),
    /// Nothing: start from the beginning of the input.
    Nothing,
}

/// What a run does before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreDecision {
    /// What to restore.
    pub choice: RestoreChoice,
    /// Delete the job's checkpoints: they belong to the lineage the savepoint replaces.
    pub delete_checkpoints: bool,
    /// Store this as the job's lineage.
    pub store_lineage: Option<LineageRecord>,
    /// Delete the stored lineage: this run's checkpoints belong to none.
    pub clear_lineage: bool,
}

impl RestoreRequest {
    /// The lineage of the run: `--lineage`, else `savepoint:<uri>` for `--from-savepoint`,
    /// else none.
    pub fn lineage(&self) -> Option<String> {
        self.lineage
            .clone()
            .or_else(|| self.savepoint.as_ref().map(|s| format!("savepoint:{s}")))
    }

    /// True when this run has an owner and the root holds something (`stored`, or
    /// checkpoints: `has_checkpoint`) of another owner, or of none (written by `weir run` or
    /// before owners were recorded).
    pub fn is_foreign(&self, stored: Option<&LineageRecord>, has_checkpoint: bool) -> bool {
        self.owner.is_some()
            && (stored.is_some() || has_checkpoint)
            && stored.and_then(|s| s.owner.as_deref()) != self.owner.as_deref()
    }

    /// True when `--fresh` applies given the `stored` lineage: always, except for a restart of
    /// the deployment named with `--lineage` and for a root that holds another owner's objects
    /// (they stay).
    pub fn wipes(&self, stored: Option<&LineageRecord>) -> bool {
        let restart = self.lineage.is_some()
            && self.lineage.as_deref() == stored.map(|s| s.deployment.as_str());
        self.fresh && !restart && !self.is_foreign(stored, false)
    }

    /// The decision for a first attempt, given the `stored` lineage (after `--fresh`, none),
    /// whether a complete checkpoint of its history exists, and the id the run's first
    /// checkpoint gets (`next_id`):
    ///
    /// 0. another owner's root (see [`Self::is_foreign`]) not adopted: the savepoint, else
    ///    nothing; nothing is deleted, and the new lineage's history starts at `next_id`, so
    ///    the predecessor's checkpoints are never restored;
    /// 1. the same lineage as stored (a restart): the latest checkpoint, else the savepoint
    ///    (`--from-savepoint`, else the initial savepoint), else nothing;
    /// 2. a new lineage with a savepoint: the savepoint; the old checkpoints are deleted;
    /// 3. a new lineage without one: the latest checkpoint, else nothing;
    /// 4. no lineage: the latest checkpoint, else the initial savepoint, else nothing; the
    ///    stored lineage is cleared (a later `--from-savepoint` of it restores the savepoint),
    ///    or, for a run with an owner, replaced by an unnamed one of that owner.
    pub fn decide(
        &self,
        stored: Option<&LineageRecord>,
        has_checkpoint: bool,
        next_id: u64,
    ) -> RestoreDecision {
        let lineage = self.lineage();
        let savepoint = self
            .savepoint
            .clone()
            .or_else(|| self.initial_savepoint.clone());
        let record = |deployment: String, first_checkpoint: u64| LineageRecord {
            deployment,
            owner: self.owner.clone(),
            first_checkpoint,
        };
        if self.is_foreign(stored, has_checkpoint) && !self.adopt {
            return RestoreDecision {
                choice: savepoint.map_or(RestoreChoice::Nothing, RestoreChoice::Savepoint),
                delete_checkpoints: false,
                store_lineage: Some(record(lineage.unwrap_or_default(), next_id)),
                clear_lineage: false,
            };
        }
        let first = stored.map_or(0, |s| s.first_checkpoint);
        let latest_else = |fallback: Option<String>| match (has_checkpoint, fallback) {
            (true, _) => RestoreChoice::LatestCheckpoint,
            (false, Some(s)) => RestoreChoice::Savepoint(s),
            (false, None) => RestoreChoice::Nothing,
        };
        let same_owner = stored.and_then(|s| s.owner.as_deref()) == self.owner.as_deref();
        match lineage {
            Some(l) if same_owner && stored.map(|s| s.deployment.as_str()) == Some(l.as_str()) => {
                RestoreDecision {
                    choice: latest_else(savepoint),
                    delete_checkpoints: false,
                    store_lineage: None,
                    clear_lineage: false,
                }
            }
            Some(l) => RestoreDecision {
                delete_checkpoints: savepoint.is_some() && has_checkpoint,
                choice: match savepoint {
                    Some(s) => RestoreChoice::Savepoint(s),
                    None => latest_else(None),
                },
                store_lineage: Some(record(l, first)),
                clear_lineage: false,
            },
            None if self.owner.is_some() => RestoreDecision {
                choice: latest_else(self.initial_savepoint.clone()),
                delete_checkpoints: false,
                store_lineage: (!same_owner || stored.is_none())
                    .then(|| record(String::new(), first)),
                clear_lineage: false,
            },
            None => RestoreDecision {
                choice: latest_else(self.initial_savepoint.clone()),
                delete_checkpoints: false,
                store_lineage: None,
                clear_lineage: stored.is_some(),
            },
        }
    }

    /// The snapshot a restart after a failure restores: the same rule as a first attempt of
    /// the lineage the first attempt stored (`has_checkpoint`: of that lineage's history).
    pub fn restart(&self, has_checkpoint: bool) -> RestoreChoice {
        let own = LineageRecord {
            deployment: self.lineage().unwrap_or_default(),
            owner: self.owner.clone(),
            first_checkpoint: 0,
        };
        self.decide(Some(&own), has_checkpoint, 0).choice
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(savepoint: Option<&str>, lineage: Option<&str>) -> RestoreRequest {
        RestoreRequest {
            savepoint: savepoint.map(str::to_string),
            lineage: lineage.map(str::to_string),
            ..RestoreRequest::default()
        }
    }

    fn sp(uri: &str) -> RestoreChoice {
        RestoreChoice::Savepoint(uri.into())
    }

    /// A stored lineage of deployment `d` without an owner (`weir run`, or written before).
    fn rec(d: &str) -> LineageRecord {
        LineageRecord {
            deployment: d.into(),
            owner: None,
            first_checkpoint: 0,
        }
    }

    fn stored_deployment(d: &RestoreDecision) -> Option<String> {
        d.store_lineage.as_ref().map(|r| r.deployment.clone())
    }

    #[test]
    fn a_savepoint_starts_a_new_lineage_and_replaces_the_old_checkpoints() {
        for lineage in [None, Some("gen-2")] {
            let r = request(Some("s3://b/sp-1"), lineage);
            let d = r.decide(Some(&rec("gen-1")), true, 9);
            assert_eq!(d.choice, sp("s3://b/sp-1"));
            assert!(d.delete_checkpoints);
            assert_eq!(stored_deployment(&d), r.lineage());
        }
    }

    #[test]
    fn a_restart_of_the_lineage_resumes_its_own_checkpoint_not_the_savepoint() {
        let r = request(Some("s3://b/sp-1"), None);
        let stored = r.lineage().map(|l| rec(&l));
        let d = r.decide(stored.as_ref(), true, 9);
        assert_eq!(d.choice, RestoreChoice::LatestCheckpoint);
        assert!(!d.delete_checkpoints);
        assert_eq!(d.store_lineage, None);
        // Killed before its first checkpoint: the savepoint again.
        assert_eq!(
            r.decide(stored.as_ref(), false, 9).choice,
            sp("s3://b/sp-1")
        );
        assert_eq!(r.restart(true), RestoreChoice::LatestCheckpoint);
        assert_eq!(r.restart(false), sp("s3://b/sp-1"));
    }

    #[test]
    fn a_new_deployment_without_a_savepoint_keeps_the_checkpoints() {
        let r = request(None, Some("gen-3"));
        let d = r.decide(Some(&rec("gen-2")), true, 9);
        assert_eq!(d.choice, RestoreChoice::LatestCheckpoint);
        assert!(!d.delete_checkpoints);
        assert_eq!(stored_deployment(&d).as_deref(), Some("gen-3"));
        assert_eq!(r.decide(None, false, 1).choice, RestoreChoice::Nothing);
    }

    #[test]
    fn without_a_lineage_the_initial_savepoint_applies_only_to_an_empty_job() {
        let r = RestoreRequest {
            initial_savepoint: Some("file:///sp".into()),
            ..RestoreRequest::default()
        };
        assert_eq!(
            r.decide(None, true, 9).choice,
            RestoreChoice::LatestCheckpoint
        );
        assert_eq!(r.decide(None, false, 1).choice, sp("file:///sp"));
        assert!(!r.decide(None, true, 9).delete_checkpoints);
        assert!(r.decide(Some(&rec("savepoint:x")), true, 9).clear_lineage);
        assert!(!r.decide(None, true, 9).clear_lineage);
    }

    #[test]
    fn fresh_is_ignored_only_by_a_restart_of_a_named_deployment() {
        let mut r = request(None, Some("gen-1"));
        r.fresh = true;
        assert!(!r.wipes(Some(&rec("gen-1"))));
        assert!(r.wipes(Some(&rec("gen-0"))));
        let mut local = request(Some("file:///sp"), None);
        local.fresh = true;
        assert!(local.wipes(local.lineage().map(|l| rec(&l)).as_ref()));
    }

    /// A request of StreamJob `uid`, deployment `gen`.
    fn owned(uid: &str, gen: &str) -> RestoreRequest {
        RestoreRequest {
            owner: Some(uid.into()),
            ..request(None, Some(gen))
        }
    }

    fn rec_of(uid: &str, d: &str, first: u64) -> LineageRecord {
        LineageRecord {
            owner: Some(uid.into()),
            first_checkpoint: first,
            ..rec(d)
        }
    }

    #[test]
    fn a_re_created_stream_job_starts_empty_and_leaves_its_predecessors_objects() {
        let r = owned("uid-new", "1-100");
        let old = rec_of("uid-old", "7-50", 0);
        let d = r.decide(Some(&old), true, 12);
        assert_eq!(d.choice, RestoreChoice::Nothing);
        assert!(!d.delete_checkpoints);
        assert_eq!(d.store_lineage, Some(rec_of("uid-new", "1-100", 12)));
        // --fresh (upgrade mode stateless) does not wipe another owner's checkpoints either.
        let fresh = RestoreRequest {
            fresh: true,
            ..r.clone()
        };
        assert!(!fresh.wipes(Some(&old)));
        // A root written without an owner (weir run, or before owners) is not adopted either.
        assert_eq!(
            r.decide(Some(&rec("7-50")), true, 12).choice,
            RestoreChoice::Nothing
        );
        assert_eq!(r.decide(None, true, 12).choice, RestoreChoice::Nothing);
    }

    #[test]
    fn a_re_created_stream_job_restores_the_savepoint_it_names() {
        let r = RestoreRequest {
            initial_savepoint: Some("s3://b/ns/j/savepoints/savepoint-3-1".into()),
            ..owned("uid-new", "1-100")
        };
        let d = r.decide(Some(&rec_of("uid-old", "7-50", 0)), true, 12);
        assert_eq!(d.choice, sp("s3://b/ns/j/savepoints/savepoint-3-1"));
        assert!(!d.delete_checkpoints);
        assert_eq!(d.store_lineage.map(|l| l.first_checkpoint), Some(12));
    }

    #[test]
    fn latest_checkpoint_named_explicitly_adopts_the_predecessors_lineage() {
        let r = RestoreRequest {
            adopt: true,
            ..owned("uid-new", "1-100")
        };
        let d = r.decide(Some(&rec_of("uid-old", "7-50", 4)), true, 12);
        assert_eq!(d.choice, RestoreChoice::LatestCheckpoint);
        assert!(!d.delete_checkpoints);
        // The adopted history keeps its start: its checkpoints stay restorable.
        assert_eq!(d.store_lineage, Some(rec_of("uid-new", "1-100", 4)));
    }

    #[test]
    fn the_owners_own_lineage_behaves_as_before() {
        let r = owned("uid", "2-200");
        let d = r.decide(Some(&rec_of("uid", "1-100", 5)), true, 12);
        assert_eq!(d.choice, RestoreChoice::LatestCheckpoint);
        assert_eq!(d.store_lineage, Some(rec_of("uid", "2-200", 5)));
        let restart = r.decide(Some(&rec_of("uid", "2-200", 5)), true, 12);
        assert_eq!(restart.store_lineage, None);
        assert_eq!(r.restart(true), RestoreChoice::LatestCheckpoint);
        assert_eq!(r.restart(false), RestoreChoice::Nothing);
    }

    #[test]
    fn records_written_before_owners_read_as_plain_deployment_ids() {
        assert_eq!(
            LineageRecord::decode(b"3-1733000000000\n"),
            rec("3-1733000000000")
        );
        let r = rec_of("uid", "1-100", 9);
        assert_eq!(LineageRecord::decode(&r.encode()), r);
    }
}
