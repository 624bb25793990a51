//! Distributed execution: `weir coordinator` and `weir worker`.
//!
//! The coordinator owns the job: it waits for `workers` workers to register, deploys every
//! subtask (all operators of subtask i on worker `i % workers`) with the checkpoint to
//! restore, runs the checkpoint coordinator (the same one as `weir run`) over the workers'
//! events, serves the admin API, and restarts the job from its latest complete checkpoint
//! when a worker is lost or a task fails, with exponential backoff up to a limit. A restarted
//! coordinator finds the latest complete checkpoint in storage: the checkpoint store is the
//! only source of truth. Workers exchange records directly over TCP with credit-based flow
//! control ([`crate::net`]).

pub mod coordinator;
mod members;
pub mod protocol;
pub mod restart;
pub mod summary;
pub mod worker;

pub use coordinator::{run_coordinator, CoordinatorOptions};
pub use restart::RestartStrategy;
pub use summary::CoordinatorSummary;
pub use worker::{run_worker, WorkerError, WorkerOptions};
