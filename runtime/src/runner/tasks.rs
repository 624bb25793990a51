//! Starting the tasks of an instantiated job, one thread each, and talking to them.

use std::collections::HashSet;
use std::thread::JoinHandle;

use crossbeam_channel::{unbounded, Receiver, Sender};

use crate::api::TaskSpec;
use crate::task::{Control, TaskEvent, TaskIo};

/// The running tasks of a process: their control channels (their reports go to the channel
/// [`RunningTasks::spawn`] returns).
pub(crate) struct RunningTasks {
    controls: Vec<Sender<Control>>,
    names: Vec<String>,
    sources: HashSet<usize>,
    handles: Vec<JoinHandle<()>>,
    /// Subtask index of each task.
    pub subtasks: Vec<u32>,
}

impl RunningTasks {
    /// Starts one thread per task; returns the tasks and the channel of their reports.
    pub fn spawn(specs: Vec<TaskSpec>) -> (Self, Receiver<TaskEvent>) {
        let (events_tx, events) = unbounded();
        let mut tasks = RunningTasks {
            controls: Vec::new(),
            names: Vec::new(),
            sources: HashSet::new(),
            handles: Vec::new(),
            subtasks: specs.iter().map(|t| t.subtask).collect(),
        };
        for (index, spec) in specs.into_iter().enumerate() {
            let (control_tx, control) = unbounded();
            let name = format!("{}#{}", spec.name, spec.subtask);
            if spec.is_source {
                tasks.sources.insert(index);
            }
            let io = TaskIo {
                index,
                control,
                events: events_tx.clone(),
            };
            let task = spec.task;
            let handle = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    if let Err(error) = task.run(&io) {
                        io.send(TaskEvent::Failed { task: index, error });
                    }
                })
                .expect("invariant: threads can be spawned");
            tasks.controls.push(control_tx);
            tasks.names.push(name);
            tasks.handles.push(handle);
        }
        (tasks, events)
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.controls.len()
    }

    /// Number of source tasks.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// `uid#subtask` of task `index`.
    pub fn name(&self, index: usize) -> &str {
        &self.names[index]
    }

    /// Sends `control` to every task, or to the sources only.
    pub fn broadcast(&self, control: Control, only_sources: bool) {
        for (i, tx) in self.controls.iter().enumerate() {
            if !only_sources || self.sources.contains(&i) {
                // A task that already exited needs no more commands.
                let _ = tx.send(control);
            }
        }
    }

    /// Tells every task to stop now and waits for them, at most `timeout`, so that their
    /// state backends close before the process exits.
    pub fn cancel(self, timeout: std::time::Duration) {
        self.broadcast(Control::Cancel, false);
        let (done_tx, done) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            self.join();
            let _ = done_tx.send(());
        });
        if done.recv_timeout(timeout).is_err() {
            tracing::warn!("tasks did not stop within {timeout:?}; exiting anyway");
        }
    }

    /// Waits for every thread to end (after all reported `Finished`).
    pub fn join(self) {
        for h in self.handles {
            let _ = h.join();
        }
    }
}
