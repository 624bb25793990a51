//! Classifies a spec change by the most disruptive field changed, as the Flink Kubernetes
//! Operator does: ignore < scale < upgrade < redeploy. Pure.
//!
//! `job.state` (suspend / resume) is not classified here: the decide function handles it as
//! its own transition.

use weir_crds::StreamJobSpec;

/// How disruptive a spec change is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Nothing changed.
    None,
    /// Only fields the operator reads without touching the job (savepoint nonce and
    /// settings, upgrade settings, `upgradeMode`, `restore`, `initialSavepointPath`,
    /// `allowNonRestoredState`): recorded, nothing restarts.
    Ignore,
    /// Parallelism or the number of workers: savepoint, then redeploy with key groups
    /// redistributed.
    Scale,
    /// Anything else the pods run with (image, job entry or arguments, checkpointing, state
    /// backend, pod settings, `restartNonce`): savepoint, then redeploy.
    Upgrade,
    /// `job.maxParallelism`: the state's key groups change, so existing state cannot be
    /// restored. Refused in every upgrade mode, as the CRD's rule refuses the edit.
    Redeploy,
}

/// The change from `old` to `new` (the maximum over the fields that differ).
pub fn classify(old: &StreamJobSpec, new: &StreamJobSpec) -> Change {
    if old == new {
        return Change::None;
    }
    let (mut a, mut b) = (ignoring_state(old), ignoring_state(new));
    if a == b {
        return Change::None;
    }
    if a.job.max_parallelism != b.job.max_parallelism {
        return Change::Redeploy;
    }
    for s in [&mut a, &mut b] {
        s.job.savepoint_trigger_nonce = None;
        s.job.upgrade_mode = Default::default();
        s.job.initial_savepoint_path = None;
        s.restore = None;
        s.job.allow_non_restored_state = false;
        s.savepoints = Default::default();
        s.upgrade = Default::default();
    }
    if a == b {
        return Change::Ignore;
    }
    for s in [&mut a, &mut b] {
        s.job.parallelism = 0;
        s.workers.replicas = None;
    }
    if a == b {
        Change::Scale
    } else {
        Change::Upgrade
    }
}

/// `spec` with `job.state` cleared.
fn ignoring_state(spec: &StreamJobSpec) -> StreamJobSpec {
    let mut s = spec.clone();
    s.job.state = Default::default();
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_crds::{JobState, UpgradeMode};

    fn base() -> StreamJobSpec {
        weir_crds::load_manifest(
            "apiVersion: weir.dev/v1alpha1\nkind: StreamJob\nmetadata: {name: j}\nspec:\n  job: {entry: csv-window-aggregate, parallelism: 2, args: {window: 1m}}\n  checkpointing: {storage: 'file:///tmp/j'}\n",
        )
        .unwrap()
        .spec
        .spec
    }

    #[test]
    fn every_field_group_has_its_class() {
        let old = base();
        type Edit = fn(&mut StreamJobSpec);
        let table: &[(&str, Edit, Change)] = &[
            ("nothing", |_| {}, Change::None),
            (
                "job.state",
                |s| s.job.state = JobState::Suspended,
                Change::None,
            ),
            (
                "savepointTriggerNonce",
                |s| s.job.savepoint_trigger_nonce = Some(3),
                Change::Ignore,
            ),
            (
                "upgradeMode",
                |s| s.job.upgrade_mode = UpgradeMode::Stateless,
                Change::Ignore,
            ),
            (
                "allowNonRestoredState",
                |s| s.job.allow_non_restored_state = true,
                Change::Ignore,
            ),
            (
                "savepoints.historyMaxCount",
                |s| s.savepoints.history_max_count = 9,
                Change::Ignore,
            ),
            (
                "upgrade.rollback",
                |s| s.upgrade.rollback = true,
                Change::Ignore,
            ),
            ("job.parallelism", |s| s.job.parallelism = 3, Change::Scale),
            (
                "workers.replicas",
                |s| s.workers.replicas = Some(1),
                Change::Scale,
            ),
            (
                "job.args",
                |s| {
                    s.job.args.insert("window".into(), "2m".into());
                },
                Change::Upgrade,
            ),
            (
                "image",
                |s| s.image = Some("weir:2".into()),
                Change::Upgrade,
            ),
            (
                "checkpointing.interval",
                |s| s.checkpointing.interval = "1s".into(),
                Change::Upgrade,
            ),
            (
                "restartNonce",
                |s| s.restart_nonce = Some(1),
                Change::Upgrade,
            ),
            (
                "workers.resources",
                |s| {
                    s.workers.labels.insert("a".into(), "b".into());
                },
                Change::Upgrade,
            ),
            (
                "job.maxParallelism",
                |s| s.job.max_parallelism = 256,
                Change::Redeploy,
            ),
        ];
        for (field, edit, want) in table {
            let mut new = old.clone();
            edit(&mut new);
            assert_eq!(classify(&old, &new), *want, "{field}");
        }
    }

    #[test]
    fn the_most_disruptive_field_wins() {
        let old = base();
        let mut new = old.clone();
        new.job.savepoint_trigger_nonce = Some(1);
        new.job.parallelism = 4;
        assert_eq!(classify(&old, &new), Change::Scale);
        new.job.args.insert("extra".into(), "1".into());
        assert_eq!(classify(&old, &new), Change::Upgrade);
        new.job.max_parallelism = 512;
        assert_eq!(classify(&old, &new), Change::Redeploy);
    }
}
