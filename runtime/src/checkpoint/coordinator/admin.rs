//! The coordinator's answers to the admin API: job and checkpoint views, savepoint triggers,
//! stop with savepoint (with or without drain) and cancel.

use tracing::info;
use weir_crds::StorageLocation;

use super::{Coordinator, Stop, Target};
use crate::admin::{
    AdminRequest, ApiError, CheckpointsInfo, JobInfo, JobRunState, SavepointState, SavepointStatus,
    StopRequest,
};
use crate::checkpoint::coordinator::TaskSet;
use crate::checkpoint::metadata::SnapshotKind;
use crate::metrics::JobMetrics;
use crate::runner::{error_chain, open_storage};
use crate::storage::paths::{check_within, join};
use crate::task::Control;

impl Coordinator<'_> {
    /// Answers an admin request.
    pub(super) fn answer(
        &mut self,
        request: AdminRequest,
        tasks: &dyn TaskSet,
        metrics: &JobMetrics,
    ) {
        // A requester that went away needs no answer.
        match request {
            AdminRequest::Job(reply) => {
                let watermark = metrics.watermark();
                let _ = reply.send(JobInfo {
                    name: self.job.to_string(),
                    id: self.info.job_id.clone(),
                    state: if self.finishing {
                        JobRunState::Finishing
                    } else {
                        JobRunState::Running
                    },
                    restarts: self.info.restarts,
                    failure: self.info.failure.clone(),
                    parallelism: self.parallelism,
                    max_parallelism: self.max_parallelism,
                    start_time: self.info.start_time.clone(),
                    restored_from: self.info.restored_from.clone(),
                    records_in: metrics.records_in(),
                    records_out: metrics.records_out(),
                    watermark: (watermark != i64::MIN).then_some(watermark),
                });
            }
            AdminRequest::Checkpoints(reply) => {
                let _ = reply.send(CheckpointsInfo {
                    latest: self.history.stats.last_info.clone(),
                    in_progress: self.pending.keys().next().copied(),
                    completed: self.history.stats.completed,
                    failed: self.history.stats.failed,
                    recent_failures: self.history.recent_failures.iter().cloned().collect(),
                });
            }
            AdminRequest::TriggerSavepoint {
                directory,
                trigger_id,
                reply,
            } => {
                let _ = reply.send(self.queue_savepoint(directory, trigger_id));
            }
            AdminRequest::Stop { request, reply } => {
                let _ = reply.send(self.request_stop(request, tasks));
            }
            AdminRequest::Metrics(reply) => {
                let _ = reply.send(self.render_metrics(metrics));
            }
            AdminRequest::Savepoint { trigger_id, reply } => {
                let _ = reply.send(self.history.savepoints.get(&trigger_id).cloned());
            }
        }
    }

    /// The target of a savepoint into `directory` (default: the job's savepoint directory),
    /// checked writable by writing and deleting a probe object.
    fn savepoint_target(&self, directory: Option<String>) -> Result<Target, ApiError> {
        let invalid =
            |m: String| ApiError::new(400, "invalid_directory", format!("directory: {m}"));
        let (storage, dir) = match directory {
            None => (self.storage.clone(), self.paths.savepoints()),
            Some(uri) => {
                if let Some(prefixes) = &self.savepoint_prefixes {
                    check_within(&uri, prefixes)?;
                }
                let location = StorageLocation::parse_with(&uri, self.s3).map_err(invalid)?;
                let storage = open_storage(&location).map_err(|e| invalid(error_chain(&e)))?;
                (storage, String::new())
            }
        };
        let probe = join(&dir, ".weir-write-probe");
        storage
            .write(&probe, b"probe")
            .and_then(|()| storage.delete_all(&probe))
            .map_err(|e| {
                ApiError::new(
                    400,
                    "unwritable_directory",
                    format!(
                        "cannot write savepoints to {}: {}",
                        storage.uri(&dir),
                        error_chain(&e)
                    ),
                )
            })?;
        Ok(Target {
            storage,
            dir,
            kind: SnapshotKind::Savepoint,
            trigger: None,
        })
    }

    /// Registers a new savepoint trigger as in progress, under the caller's id if given.
    fn new_trigger(&mut self, id: Option<String>) -> String {
        self.history.next_trigger += 1;
        let trigger =
            id.unwrap_or_else(|| format!("{:x}-{}", std::process::id(), self.history.next_trigger));
        self.history.savepoints.insert(
            trigger.clone(),
            SavepointStatus {
                trigger_id: trigger.clone(),
                status: SavepointState::InProgress,
                location: None,
                failure: None,
            },
        );
        trigger
    }

    fn refuse_when_finishing(&self) -> Result<(), ApiError> {
        if self.finishing {
            return Err(ApiError::new(
                409,
                "job_finishing",
                "the input has ended; the job takes its final checkpoint",
            ));
        }
        Ok(())
    }

    fn queue_savepoint(
        &mut self,
        directory: Option<String>,
        trigger_id: Option<String>,
    ) -> Result<String, ApiError> {
        if let Some(known) = self.history.known_trigger(trigger_id.as_deref()) {
            return Ok(known);
        }
        self.refuse_when_finishing()?;
        let mut target = self.savepoint_target(directory)?;
        let trigger = self.new_trigger(trigger_id);
        target.trigger = Some(trigger.clone());
        self.queued_savepoints.push_back(target);
        info!(trigger = %trigger, "savepoint requested");
        Ok(trigger)
    }

    fn request_stop(
        &mut self,
        request: StopRequest,
        tasks: &dyn TaskSet,
    ) -> Result<Option<String>, ApiError> {
        if let Some(known) = self.history.known_trigger(request.trigger_id.as_deref()) {
            return Ok(Some(known));
        }
        if self.stop.is_some() || self.cancelled {
            return Err(ApiError::new(
                409,
                "stop_in_progress",
                "the job is already stopping",
            ));
        }
        self.refuse_when_finishing()?;
        if !request.with_savepoint {
            self.cancelled = true;
            return Ok(None);
        }
        let mut target = self.savepoint_target(request.directory)?;
        let trigger = self.new_trigger(request.trigger_id);
        target.trigger = Some(trigger.clone());
        info!(trigger = %trigger, drain = request.drain, "stop with savepoint requested");
        if request.drain {
            tasks.control(Control::Drain);
            self.stop = Some(Stop {
                trigger: trigger.clone(),
                drain: true,
                drain_target: Some(target),
            });
        } else {
            self.queued_savepoints.push_front(target);
            self.stop = Some(Stop {
                trigger: trigger.clone(),
                drain: false,
                drain_target: None,
            });
        }
        Ok(Some(trigger))
    }
}
