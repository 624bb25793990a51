//! The coordinator driving a fake task set over in-memory storage: completion and
//! retention, a declined and an expired checkpoint, `maxConcurrent`, and stop with drain,
//! without processes or files.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};

use super::schedule::tests::settings;
use super::{Coordinator, JobEvent, RunInfo, TaskSet};
use crate::admin::{AdminRequest, StopRequest};
use crate::api::CheckpointBarrier;
use crate::checkpoint::metadata::{SnapshotKind, SubtaskMetadata};
use crate::checkpoint::writer::SnapshotTarget;
use crate::metrics::JobMetrics;
use crate::runner::RunEnd;
use crate::storage::paths::{join, JobPaths};
use crate::storage::{CheckpointStorage, MemoryStorage};
use crate::task::Control;

/// How a task answers a barrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// Writes its state file and acknowledges at once.
    Ack,
    /// As `Ack`, from another thread after this long.
    AckAfter(Duration),
    /// Writing failed.
    Decline,
    /// Never answers.
    Silent,
}

/// What the coordinator told the fake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Trigger(CheckpointBarrier),
    Control(Control),
}

type ReplyFn = dyn Fn(usize, u64) -> Reply + Send + Sync;

/// `tasks` tasks, the first of which is the one source; its input ends once checkpoint
/// `input_ends_at` has been triggered (or once drained).
struct FakeTasks {
    tasks: usize,
    input_ends_at: u64,
    reply: Box<ReplyFn>,
    tx: Sender<JobEvent>,
    rx: Receiver<JobEvent>,
    seen: Mutex<Vec<Seen>>,
    /// Snapshots in flight as the tasks see them: (now, most ever).
    in_flight: Arc<Mutex<(usize, usize)>>,
}

impl FakeTasks {
    fn new(
        tasks: usize,
        input_ends_at: u64,
        reply: impl Fn(usize, u64) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let (tx, rx) = unbounded();
        Self {
            tasks,
            input_ends_at,
            reply: Box::new(reply),
            tx,
            rx,
            seen: Mutex::default(),
            in_flight: Arc::default(),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn controls(&self) -> Vec<Control> {
        self.seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Control(c) => Some(c),
                Seen::Trigger(_) => None,
            })
            .collect()
    }
}

fn ack(task: usize, id: u64, target: &SnapshotTarget) -> JobEvent {
    let file = format!("task-{task}.state");
    target
        .storage
        .write(&join(&target.dir, &file), b"state")
        .unwrap();
    JobEvent::Ack {
        task,
        checkpoint: id,
        metas: vec![(
            format!("op-{task}"),
            SubtaskMetadata {
                subtask: 0,
                keyed_state: None,
                operator_state: Default::default(),
                native_state: None,
            },
        )],
    }
}

impl TaskSet for FakeTasks {
    fn len(&self) -> usize {
        self.tasks
    }
    fn sources(&self) -> usize {
        1
    }
    fn name(&self, task: usize) -> String {
        format!("op-{task}#0")
    }
    fn events(&self) -> &Receiver<JobEvent> {
        &self.rx
    }
    fn trigger(&self, barrier: CheckpointBarrier, target: &SnapshotTarget) {
        self.seen.lock().unwrap().push(Seen::Trigger(barrier));
        {
            let mut f = self.in_flight.lock().unwrap();
            f.0 += 1;
            f.1 = f.1.max(f.0);
        }
        for task in 0..self.tasks {
            match (self.reply)(task, barrier.id) {
                Reply::Ack => self.tx.send(ack(task, barrier.id, target)).unwrap(),
                Reply::AckAfter(delay) => {
                    let (tx, target) = (self.tx.clone(), target.clone());
                    std::thread::spawn(move || {
                        std::thread::sleep(delay);
                        let _ = tx.send(ack(task, barrier.id, &target));
                    });
                }
                Reply::Decline => self
                    .tx
                    .send(JobEvent::Declined {
                        checkpoint: barrier.id,
                        cause: "disk full".into(),
                    })
                    .unwrap(),
                Reply::Silent => {}
            }
        }
        if barrier.id == self.input_ends_at {
            self.tx.send(JobEvent::SourceExhausted).unwrap();
        }
    }
    fn control(&self, control: Control) {
        self.seen.lock().unwrap().push(Seen::Control(control));
        match control {
            Control::CheckpointComplete(_) | Control::AbortCheckpoint(_) => {
                self.in_flight.lock().unwrap().0 -= 1;
            }
            Control::Finish => {
                for _ in 0..self.tasks {
                    self.tx.send(JobEvent::Finished).unwrap();
                }
            }
            Control::Drain => self.tx.send(JobEvent::SourceExhausted).unwrap(),
            _ => {}
        }
    }
}

struct Run {
    storage: Arc<MemoryStorage>,
    paths: JobPaths,
}

impl Run {
    fn new() -> Self {
        Self {
            storage: Arc::new(MemoryStorage::new()),
            paths: JobPaths::new("job"),
        }
    }

    /// Runs a coordinator with `settings` over `tasks` until the job ends; `admin` requests
    /// are sent once the run started.
    fn run(
        &self,
        settings: &weir_crds::CheckpointSettings,
        tasks: &FakeTasks,
        admin: Vec<AdminRequest>,
    ) -> (RunEnd, super::History) {
        let info = RunInfo {
            job_id: "test".into(),
            start_time: String::new(),
            restored_from: None,
            restarts: 0,
            failure: None,
        };
        let mut coordinator = Coordinator::new(
            self.storage.clone(),
            &self.paths,
            "job",
            settings,
            None,
            128,
            1,
            1,
            info,
        );
        let (admin_tx, admin_rx) = unbounded();
        for r in admin {
            admin_tx.send(r).unwrap();
        }
        let metrics = JobMetrics::new(1, &[]);
        let end = coordinator
            .run(tasks, &metrics, Duration::ZERO, &admin_rx)
            .expect("the run ends normally");
        (end, coordinator.history)
    }

    /// Ids of the checkpoints with a `_metadata`.
    fn complete(&self) -> Vec<u64> {
        crate::checkpoint::restore::list_checkpoint_ids(self.storage.as_ref(), &self.paths)
            .unwrap()
            .into_iter()
            .filter(|id| {
                self.storage
                    .read(&self.paths.metadata(*id))
                    .unwrap()
                    .is_some()
            })
            .collect()
    }
}

#[test]
fn checkpoints_complete_retention_keeps_the_newest_and_the_final_one_ends_the_run() {
    let run = Run::new();
    let mut s = settings(1, 0, 1);
    s.retained = 2;
    let tasks = FakeTasks::new(2, 3, |_, _| Reply::Ack);
    let (end, history) = run.run(&s, &tasks, vec![]);
    assert_eq!(end, RunEnd::Finished);
    // 1, 2, 3 periodic; 4 the final one after the input ended.
    assert_eq!(history.stats.completed, 4);
    assert_eq!(run.complete(), [3, 4]);
    let controls = tasks.controls();
    assert_eq!(
        &controls[controls.len() - 2..],
        [Control::CheckpointComplete(4), Control::Finish]
    );
    let metadata = run.storage.read(&run.paths.metadata(4)).unwrap().unwrap();
    let m = crate::checkpoint::CheckpointMetadata::decode(&metadata).unwrap();
    assert_eq!(m.operators.len(), 2, "both tasks' operators are recorded");
}

#[test]
fn a_declined_checkpoint_fails_alone_its_files_are_deleted_and_the_next_completes() {
    let run = Run::new();
    let tasks = FakeTasks::new(2, 2, |task, id| match (task, id) {
        (1, 1) => Reply::Decline,
        _ => Reply::Ack,
    });
    let (end, history) = run.run(&settings(1, 0, 1), &tasks, vec![]);
    assert_eq!(end, RunEnd::Finished);
    assert_eq!(history.stats.failed, 1);
    assert_eq!(history.recent_failures.front().map(|f| f.0), Some(1));
    assert!(tasks.controls().contains(&Control::AbortCheckpoint(1)));
    assert!(
        !run.storage
            .paths()
            .iter()
            .any(|p| p.starts_with(&run.paths.checkpoint(1))),
        "task 0's file of the declined checkpoint is deleted: {:?}",
        run.storage.paths()
    );
    assert_eq!(history.stats.completed, 2);
}

#[test]
fn a_checkpoint_not_acknowledged_within_the_timeout_is_aborted() {
    let run = Run::new();
    let mut s = settings(1, 0, 1);
    s.timeout = Duration::from_millis(40);
    let tasks = FakeTasks::new(2, 2, |task, id| match (task, id) {
        (1, 1) => Reply::Silent,
        _ => Reply::Ack,
    });
    let (end, history) = run.run(&s, &tasks, vec![]);
    assert_eq!(end, RunEnd::Finished);
    assert_eq!(history.stats.failed, 1);
    assert!(history.recent_failures[0].1.contains("expired"));
    assert_eq!(tasks.controls()[0], Control::AbortCheckpoint(1));
    assert_eq!(run.complete(), [3]);
}

#[test]
fn max_concurrent_bounds_the_checkpoints_in_flight() {
    for max_concurrent in [1, 3] {
        let run = Run::new();
        let tasks = FakeTasks::new(1, 8, |_, _| Reply::AckAfter(Duration::from_millis(30)));
        let (end, history) = run.run(&settings(1, 0, max_concurrent), &tasks, vec![]);
        assert_eq!(end, RunEnd::Finished);
        assert_eq!(history.stats.completed, 9);
        let most = tasks.in_flight.lock().unwrap().1;
        assert_eq!(most, max_concurrent, "maxConcurrent {max_concurrent}");
    }
}

#[test]
fn stop_with_drain_takes_its_savepoint_as_the_final_snapshot() {
    let run = Run::new();
    // The input never ends by itself.
    let tasks = FakeTasks::new(2, u64::MAX, |_, _| Reply::Ack);
    let (reply, answer) = tokio::sync::oneshot::channel();
    let stop = AdminRequest::Stop {
        request: StopRequest {
            with_savepoint: true,
            directory: None,
            trigger_id: Some("t-1".into()),
            drain: true,
        },
        reply,
    };
    let (end, history) = run.run(&settings(60_000, 0, 1), &tasks, vec![stop]);
    assert_eq!(
        answer.blocking_recv().unwrap().unwrap().as_deref(),
        Some("t-1")
    );
    let RunEnd::Stopped { savepoint } = end else {
        panic!("{end:?}")
    };
    assert!(
        savepoint.starts_with("memory:///job/savepoints/"),
        "{savepoint}"
    );
    let seen = tasks.seen();
    let Some(Seen::Trigger(last)) = seen.iter().rev().find(|s| matches!(s, Seen::Trigger(_)))
    else {
        panic!("{seen:?}")
    };
    assert_eq!(last.kind, SnapshotKind::Savepoint);
    assert_eq!(
        history.savepoints["t-1"].location.as_deref(),
        Some(savepoint.as_str())
    );
    let dir = savepoint.strip_prefix("memory:///").unwrap();
    assert!(run.storage.read(&join(dir, "_metadata")).unwrap().is_some());
}
