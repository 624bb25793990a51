//! Whether a snapshot can restore a job graph: max parallelism, operator uids, and the kind,
//! value type, version and TTL setting of the keyed states both know. Pure. Used by every restore ([`super::RestorePlan`]) and by
//! `weir check`, the operator's pre-flight check before an upgrade stops anything.

use std::collections::BTreeMap;

use super::metadata::CheckpointMetadata;
use crate::state::StateInfo;

/// What the job being started declares: its operator uids (pipeline order), the keyed states
/// each registers, its max parallelism, and whether state of a vanished uid may be dropped.
#[derive(Debug, Clone, Copy)]
pub struct JobShape<'a> {
    /// Operator uids.
    pub uids: &'a [String],
    /// Keyed states by operator uid (those the job's operators declare when built).
    pub keyed_states: &'a BTreeMap<String, Vec<StateInfo>>,
    /// Uids whose `keyed_states` are all the keyed states they keep (window operators; a
    /// process function declares more of its own when it opens).
    pub fixed_states: &'a [String],
    /// `spec.job.maxParallelism`.
    pub max_parallelism: u32,
    /// `spec.job.allowNonRestoredState`.
    pub allow_non_restored_state: bool,
}

/// The reasons `snapshot` cannot restore `job`, each a sentence naming the field or uid and
/// the fix; empty when it can. The rules are Flink's: the max parallelism of existing state
/// never changes, state is matched to operators by uid (state of a uid the job lost fails
/// unless `allowNonRestoredState`), and a state keeps its kind; a state whose descriptor
/// names its value type keeps that type and its version. Weir's own: a window operator that no
/// longer declares a state of the snapshot stores its windows differently now (its assigner,
/// offset, allowed lateness or late side output changed which window operator runs it), so its
/// open windows would restore empty: refused unless `allowNonRestoredState`.
pub fn incompatibilities(snapshot: &CheckpointMetadata, job: JobShape<'_>) -> Vec<String> {
    let id = snapshot.checkpoint_id;
    let mut reasons = Vec::new();
    if snapshot.max_parallelism != job.max_parallelism {
        reasons.push(format!(
            "snapshot {id} has max parallelism {} but spec.job.maxParallelism is {}; max parallelism is fixed for the life of the state: set it back to {}",
            snapshot.max_parallelism, job.max_parallelism, snapshot.max_parallelism
        ));
    }
    let unknown: Vec<&String> = snapshot
        .operators
        .keys()
        .filter(|u| !job.uids.contains(u))
        .collect();
    if !unknown.is_empty() && !job.allow_non_restored_state {
        reasons.push(format!(
            "snapshot {id} holds state of operator uid(s) {unknown:?} that the job does not have; keep the uid(s) or set spec.job.allowNonRestoredState: true to drop that state"
        ));
    }
    for (uid, declared) in job.keyed_states {
        let Some(op) = snapshot.operators.get(uid) else {
            continue;
        };
        let stored = op.subtasks.iter().flat_map(|s| {
            s.keyed_state
                .iter()
                .flat_map(|k| &k.states)
                .chain(s.native_state.iter().flat_map(|n| &n.states))
        });
        for old in stored {
            let Some(new) = declared.iter().find(|d| d.name == old.name) else {
                if job.fixed_states.contains(uid) && !job.allow_non_restored_state {
                    let reason = format!(
                        "operator `{uid}` holds window state `{}` in snapshot {id} that its window no longer keeps: its window assigner, offset, allowed lateness or late side output changed how the window stores its contents, so the windows open in the snapshot would restore empty; restore with the window settings the snapshot was taken with (and change them after its windows have fired), or set spec.job.allowNonRestoredState: true to drop their contents",
                        old.name
                    );
                    if !reasons.contains(&reason) {
                        reasons.push(reason);
                    }
                }
                continue;
            };
            let reason = if new.kind != old.kind {
                format!(
                    "operator `{uid}` state `{}` is {:?} state in snapshot {id} but the job declares it as {:?}; keep its kind or give the operator a new uid",
                    old.name, old.kind, new.kind
                )
            } else if new.ttl != old.ttl {
                let (was, now) = if old.ttl {
                    ("with", "without")
                } else {
                    ("without", "with")
                };
                format!(
                    "operator `{uid}` state `{}` was written {was} a TTL in snapshot {id} but the job declares it {now} one; its values are stored differently, so keep the TTL setting (any duration) or give the state a new name",
                    old.name
                )
            } else if let (Some(old_type), Some(new_type)) = (&old.type_name, &new.type_name) {
                if (old_type == new_type && old.version == new.version)
                    || new.migrates_from == Some(old.version)
                {
                    continue;
                }
                format!(
                    "operator `{uid}` state `{}` holds {old_type} version {} in snapshot {id} but the job declares {new_type} version {}; keep the state's type and version, declare a migration from version {} (`with_migration`), or give the state a new name (its old values are then left unread)",
                    old.name, old.version, new.version, old.version
                )
            } else {
                continue;
            };
            if !reasons.contains(&reason) {
                reasons.push(reason);
            }
        }
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::metadata::{
        KeyedStateFile, OperatorMetadata, SnapshotKind, SubtaskMetadata, FORMAT_VERSION,
    };
    use crate::state::{KeyGroupRange, StateKind};

    fn snapshot(max_parallelism: u32, ops: &[(&str, Option<StateKind>)]) -> CheckpointMetadata {
        let operators = ops
            .iter()
            .map(|(uid, kind)| {
                let keyed_state = kind.map(|kind| KeyedStateFile {
                    file: "f".into(),
                    size: 0,
                    crc32c: 0,
                    key_group_range: KeyGroupRange {
                        start: 0,
                        end: max_parallelism as u16 - 1,
                    },
                    key_group_offsets: vec![],
                    key_group_crc32c: vec![],
                    states: vec![StateInfo::new("window-contents", kind)],
                    entries: 0,
                });
                let sub = SubtaskMetadata {
                    subtask: 0,
                    keyed_state,
                    operator_state: BTreeMap::new(),
                    native_state: None,
                };
                (
                    uid.to_string(),
                    OperatorMetadata {
                        parallelism: 1,
                        subtasks: vec![sub],
                    },
                )
            })
            .collect();
        CheckpointMetadata {
            format_version: FORMAT_VERSION,
            job: "j".into(),
            checkpoint_id: 7,
            kind: SnapshotKind::Savepoint,
            timestamp_ms: 0,
            max_parallelism,
            operators,
        }
    }

    fn check(snap: &CheckpointMetadata, uids: &[&str], max: u32, allow: bool) -> Vec<String> {
        let uids: Vec<String> = uids.iter().map(|u| u.to_string()).collect();
        let keyed = BTreeMap::from([(
            "window".to_string(),
            vec![StateInfo::new("window-contents", StateKind::Aggregating)],
        )]);
        incompatibilities(
            snap,
            JobShape {
                uids: &uids,
                keyed_states: &keyed,
                fixed_states: &[],
                max_parallelism: max,
                allow_non_restored_state: allow,
            },
        )
    }

    #[test]
    fn the_same_shape_restores() {
        let s = snapshot(
            128,
            &[("source", None), ("window", Some(StateKind::Aggregating))],
        );
        assert!(check(&s, &["source", "window", "sink"], 128, false).is_empty());
    }

    #[test]
    fn each_rule_names_its_field() {
        let s = snapshot(
            128,
            &[("source", None), ("window", Some(StateKind::Aggregating))],
        );
        let r = check(&s, &["source", "window"], 256, false);
        assert_eq!(r.len(), 1);
        assert!(r[0].contains("maxParallelism is 256") && r[0].contains("set it back to 128"));

        let r = check(&s, &["source", "window-v2"], 128, false);
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(r[0].contains("\"window\"") && r[0].contains("allowNonRestoredState"));
        assert!(check(&s, &["source", "window-v2"], 128, true).is_empty());

        let s = snapshot(128, &[("window", Some(StateKind::Map))]);
        let r = check(&s, &["window"], 128, false);
        assert_eq!(r.len(), 1);
        assert!(r[0].contains("Map state") && r[0].contains("as Aggregating"));
    }

    #[test]
    fn a_window_that_stores_its_contents_differently_now_is_refused() {
        // Taken by the general window operator; the job now runs the window on the fast path.
        let s = snapshot(128, &[("window", Some(StateKind::Aggregating))]);
        let mut s2 = s.clone();
        s2.operators.get_mut("window").unwrap().subtasks[0]
            .keyed_state
            .as_mut()
            .unwrap()
            .states = vec![StateInfo::new(
            "window-accumulators",
            StateKind::Aggregating,
        )];
        let uids = vec!["window".to_string()];
        let keyed = BTreeMap::from([(
            "window".to_string(),
            vec![StateInfo::new("window-contents", StateKind::Aggregating)],
        )]);
        let run = |snap: &CheckpointMetadata, fixed: &[String], allow: bool| {
            incompatibilities(
                snap,
                JobShape {
                    uids: &uids,
                    keyed_states: &keyed,
                    fixed_states: fixed,
                    max_parallelism: 128,
                    allow_non_restored_state: allow,
                },
            )
        };
        let r = run(&s2, &uids, false);
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(
            r[0].contains("`window-accumulators`") && r[0].contains("allowNonRestoredState"),
            "{r:?}"
        );
        assert!(run(&s2, &uids, true).is_empty());
        assert!(run(&s, &uids, false).is_empty(), "the same layout restores");
        // A process function declares more states when it opens: not refused.
        assert!(run(&s2, &[], false).is_empty());
    }

    #[test]
    fn a_declared_type_or_version_change_is_refused_naming_the_state() {
        let mut s = snapshot(128, &[("fn", Some(StateKind::Value))]);
        let typed =
            |t: &str, v: u32| StateInfo::new("window-contents", StateKind::Value).with_type(t, v);
        s.operators.get_mut("fn").unwrap().subtasks[0]
            .keyed_state
            .as_mut()
            .unwrap()
            .states = vec![typed("app::Flag", 1)];
        let uids = vec!["fn".to_string()];
        let shape = |keyed: &BTreeMap<String, Vec<StateInfo>>| {
            incompatibilities(
                &s,
                JobShape {
                    uids: &uids,
                    keyed_states: keyed,
                    fixed_states: &[],
                    max_parallelism: 128,
                    allow_non_restored_state: false,
                },
            )
        };
        let same = BTreeMap::from([("fn".to_string(), vec![typed("app::Flag", 1)])]);
        assert!(shape(&same).is_empty());
        let bumped = BTreeMap::from([("fn".to_string(), vec![typed("app::Flag", 2)])]);
        let r = shape(&bumped);
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(
            r[0].contains("`fn` state `window-contents`") && r[0].contains("app::Flag version 1")
        );
        let retyped = BTreeMap::from([("fn".to_string(), vec![typed("app::Flag2", 1)])]);
        assert!(shape(&retyped)[0].contains("declares app::Flag2 version 1"));
        // Turning a TTL on (or off) changes how values are stored.
        let with_ttl =
            BTreeMap::from([("fn".to_string(), vec![typed("app::Flag", 1).with_ttl(true)])]);
        let r = shape(&with_ttl);
        assert!(
            r.len() == 1
                && r[0].contains("written without a TTL")
                && r[0].contains("declares it with one"),
            "{r:?}"
        );
        // A snapshot written before descriptors (no type recorded) restores.
        let untyped = BTreeMap::from([(
            "fn".to_string(),
            vec![StateInfo::new("window-contents", StateKind::Value)],
        )]);
        assert!(shape(&untyped).is_empty());
    }
}
