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
    /// The manifest's `job.initialSavepointPath`: restored when the job has nothing newer.
    pub initial_savepoint: Option<String>,
    /// `--lineage`: the deployment this run belongs to.
    pub lineage: Option<String>,
    /// `--fresh`: delete the job's checkpoints first (ignored by a restart of the lineage
    /// named with `--lineage`, so that a restarted pod never wipes its own checkpoints).
    pub fresh: bool,
}

/// The snapshot to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreChoice {
    /// The job's latest complete checkpoint.
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
    pub store_lineage: Option<String>,
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

    /// True when `--fresh` applies given the `stored` lineage: always, except for a restart of
    /// the deployment named with `--lineage`.
    pub fn wipes(&self, stored: Option<&str>) -> bool {
        self.fresh && !(self.lineage.is_some() && self.lineage.as_deref() == stored)
    }

    /// The decision for a first attempt, given the `stored` lineage (after `--fresh`, none)
    /// and whether a complete checkpoint exists:
    ///
    /// 1. the same lineage as stored (a restart): the latest checkpoint, else the savepoint
    ///    (`--from-savepoint`, else `initialSavepointPath`), else nothing;
    /// 2. a new lineage with a savepoint: the savepoint; the old checkpoints are deleted;
    /// 3. a new lineage without one: the latest checkpoint, else nothing;
    /// 4. no lineage: the latest checkpoint, else `initialSavepointPath`, else nothing; the
    ///    stored lineage is cleared (a later `--from-savepoint` of it restores the savepoint).
    pub fn decide(&self, stored: Option<&str>, has_checkpoint: bool) -> RestoreDecision {
        let lineage = self.lineage();
        let savepoint = self
            .savepoint
            .clone()
            .or_else(|| self.initial_savepoint.clone());
        let latest_else = |fallback: Option<String>| match (has_checkpoint, fallback) {
            (true, _) => RestoreChoice::LatestCheckpoint,
            (false, Some(s)) => RestoreChoice::Savepoint(s),
            (false, None) => RestoreChoice::Nothing,
        };
        match lineage {
            Some(l) if stored == Some(l.as_str()) => RestoreDecision {
                choice: latest_else(savepoint),
                delete_checkpoints: false,
                store_lineage: None,
                clear_lineage: false,
            },
            Some(l) => RestoreDecision {
                delete_checkpoints: savepoint.is_some() && has_checkpoint,
                choice: match savepoint {
                    Some(s) => RestoreChoice::Savepoint(s),
                    None => latest_else(None),
                },
                store_lineage: Some(l),
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
    /// the lineage the first attempt stored.
    pub fn restart(&self, has_checkpoint: bool) -> RestoreChoice {
        let lineage = self.lineage();
        self.decide(lineage.as_deref(), has_checkpoint).choice
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

    #[test]
    fn a_savepoint_starts_a_new_lineage_and_replaces_the_old_checkpoints() {
        for lineage in [None, Some("gen-2")] {
            let r = request(Some("s3://b/sp-1"), lineage);
            let d = r.decide(Some("gen-1"), true);
            assert_eq!(d.choice, sp("s3://b/sp-1"));
            assert!(d.delete_checkpoints);
            assert_eq!(d.store_lineage, r.lineage());
        }
    }

    #[test]
    fn a_restart_of_the_lineage_resumes_its_own_checkpoint_not_the_savepoint() {
        let r = request(Some("s3://b/sp-1"), None);
        let stored = r.lineage();
        let d = r.decide(stored.as_deref(), true);
        assert_eq!(d.choice, RestoreChoice::LatestCheckpoint);
        assert!(!d.delete_checkpoints);
        assert_eq!(d.store_lineage, None);
        // Killed before its first checkpoint: the savepoint again.
        assert_eq!(r.decide(stored.as_deref(), false).choice, sp("s3://b/sp-1"));
        assert_eq!(r.restart(true), RestoreChoice::LatestCheckpoint);
        assert_eq!(r.restart(false), sp("s3://b/sp-1"));
    }

    #[test]
    fn a_new_deployment_without_a_savepoint_keeps_the_checkpoints() {
        let r = request(None, Some("gen-3"));
        let d = r.decide(Some("gen-2"), true);
        assert_eq!(d.choice, RestoreChoice::LatestCheckpoint);
        assert!(!d.delete_checkpoints);
        assert_eq!(d.store_lineage.as_deref(), Some("gen-3"));
        assert_eq!(r.decide(None, false).choice, RestoreChoice::Nothing);
    }

    #[test]
    fn without_a_lineage_the_initial_savepoint_applies_only_to_an_empty_job() {
        let r = RestoreRequest {
            initial_savepoint: Some("file:///sp".into()),
            ..RestoreRequest::default()
        };
        assert_eq!(r.decide(None, true).choice, RestoreChoice::LatestCheckpoint);
        assert_eq!(r.decide(None, false).choice, sp("file:///sp"));
        assert!(!r.decide(None, true).delete_checkpoints);
        assert!(r.decide(Some("savepoint:x"), true).clear_lineage);
        assert!(!r.decide(None, true).clear_lineage);
    }

    #[test]
    fn fresh_is_ignored_only_by_a_restart_of_a_named_deployment() {
        let mut r = request(None, Some("gen-1"));
        r.fresh = true;
        assert!(!r.wipes(Some("gen-1")));
        assert!(r.wipes(Some("gen-0")));
        let mut local = request(Some("file:///sp"), None);
        local.fresh = true;
        assert!(local.wipes(local.lineage().as_deref()));
    }
}
