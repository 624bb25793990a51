//! The general window operator (Flink's `WindowOperator` with the default event-time or
//! processing-time trigger): any [`WindowAssigner`], any [`WindowContents`], allowed lateness,
//! the late side output and merging session windows, on the keyed state store and the timer
//! service.
//!
//! Per key and window the operator keeps the window's contents (namespace = the window) and
//! two timers in the assigner's time domain, namespaced by the window too: the trigger at
//! `end - 1`, which emits the window's result, and the cleanup at `end - 1 + allowed
//! lateness` (the same timer when the lateness is 0), which removes the contents. A record for
//! a window whose trigger time has passed but not its cleanup time fires the window again at
//! once. Session windows also keep, per key, the list of its sessions (value state
//! [`SESSIONS`]); merging moves the merged sessions' contents into the result's namespace and
//! replaces their timers. All of it is keyed state: checkpointed, restored and redistributed
//! on rescale with the key.

use std::marker::PhantomData;
use std::sync::Arc;

use super::contents::WindowContents;
use super::sessions::add_window;
use crate::api::process::SideOutputs;
use crate::api::{
    CheckpointBarrier, Collector, Key, KeyedRecord, OperatorSnapshot, Output, OutputTag,
    TaskContext, TaskError, TimeWindow, Timestamp, WindowAssigner, MAX_WATERMARK, MIN_WATERMARK,
};
use crate::metrics::{JobMetrics, OperatorCounters};
use crate::state::timers::{TimeDomain, Timer, TimerQueue};
use crate::state::typed::{Clock, ValueState};
use crate::state::{KeyGroup, KeyedStateStore, StateError, StateInfo, StateKind};

/// Name of the per-key list of session windows.
pub const SESSIONS: &str = "window-sessions";

/// The state of the session list, declared by merging windows.
pub fn sessions_info() -> StateInfo {
    StateInfo::new(SESSIONS, StateKind::Value)
}

/// The per-key session list of a merging assigner.
fn session_state(sessions: &Option<ValueState<Vec<TimeWindow>>>) -> &ValueState<Vec<TimeWindow>> {
    sessions
        .as_ref()
        .expect("invariant: only merging assigners keep sessions")
}

/// How the operator treats time and late records.
#[derive(Debug, Clone, Copy)]
pub struct WindowSettings {
    /// Which windows a record belongs to.
    pub assigner: WindowAssigner,
    /// How long after `end - 1` a window keeps its contents for late records, ms (event time
    /// only; >= 0).
    pub allowed_lateness_ms: i64,
    /// The side output for records later than that, by tag id.
    pub late_tag: Option<&'static str>,
}

/// The window operator of one subtask.
pub struct WindowOperator<K, T, C: WindowContents<K, T>> {
    uid: String,
    store: KeyedStateStore,
    timers: TimerQueue,
    contents: C,
    settings: WindowSettings,
    sessions: Option<ValueState<Vec<TimeWindow>>>,
    watermark: Timestamp,
    clock: Clock,
    next: Box<dyn Collector<C::Out>>,
    sides: SideOutputs,
    metrics: Arc<JobMetrics>,
    counters: Arc<OperatorCounters>,
    subtask: usize,
    key_buf: Vec<u8>,
    windows: Vec<TimeWindow>,
    _types: PhantomData<fn(K, T)>,
}

impl<K: Key, T: Clone + 'static, C: WindowContents<K, T>> WindowOperator<K, T, C> {
    /// Opens the subtask's keyed state of `uid` (restored when the job restores) and its
    /// timers; `contents` opens the window function's state in the store.
    ///
    /// # Errors
    /// [`TaskError::State`] when the state cannot be opened, registered or restored.
    pub(crate) fn new(
        uid: &str,
        ctx: &TaskContext,
        settings: WindowSettings,
        contents: impl FnOnce(&mut KeyedStateStore) -> Result<C, StateError>,
        next: Box<dyn Collector<C::Out>>,
        sides: SideOutputs,
    ) -> Result<Self, TaskError> {
        let err = |source| TaskError::State {
            uid: uid.to_string(),
            source,
        };
        let mut store = ctx.keyed_state(uid)?;
        let timers = TimerQueue::open(store.backend()).map_err(err)?;
        let contents = contents(&mut store).map_err(err)?;
        let sessions = if settings.assigner.is_merging() {
            Some(store.value_state(SESSIONS, None).map_err(err)?)
        } else {
            None
        };
        Ok(Self {
            uid: uid.to_string(),
            store,
            timers,
            contents,
            settings,
            sessions,
            watermark: MIN_WATERMARK,
            clock: ctx.clock.clone(),
            next,
            sides,
            counters: ctx.metrics.operator(uid, ctx.subtask),
            metrics: ctx.metrics.clone(),
            subtask: ctx.subtask as usize,
            key_buf: Vec::with_capacity(32),
            windows: Vec::with_capacity(4),
            _types: PhantomData,
        })
    }

    fn state_err(&self, source: StateError) -> TaskError {
        TaskError::State {
            uid: self.uid.clone(),
            source,
        }
    }

    fn domain(&self) -> TimeDomain {
        self.settings.assigner.domain()
    }

    /// When the window's contents go: `end - 1 + allowed lateness` in event time, `end - 1`
    /// in processing time.
    fn cleanup_time(&self, w: &TimeWindow) -> Timestamp {
        match self.domain() {
            TimeDomain::EventTime => w
                .max_timestamp()
                .saturating_add(self.settings.allowed_lateness_ms),
            TimeDomain::ProcessingTime => w.max_timestamp(),
        }
    }

    /// True when the window's contents are gone already (event time).
    fn is_window_late(&self, w: &TimeWindow) -> bool {
        self.domain() == TimeDomain::EventTime && self.cleanup_time(w) <= self.watermark
    }

    fn timer(
        &self,
        key_group: KeyGroup,
        key: &[u8],
        timestamp: Timestamp,
        w: &TimeWindow,
    ) -> Timer {
        Timer {
            timestamp,
            key_group,
            key: key.into(),
            namespace: Box::new(w.namespace()),
        }
    }

    /// Sets a timer at `at` for window `w` of the current key (set twice, it fires once).
    fn register_timer(
        &mut self,
        key_group: KeyGroup,
        at: Timestamp,
        w: &TimeWindow,
    ) -> Result<(), TaskError> {
        let timer = self.timer(key_group, &self.key_buf, at, w);
        let domain = self.domain();
        self.timers
            .register(self.store.backend(), domain, timer)
            .map(|_| ())
            .map_err(|e| self.state_err(e))
    }

    /// Removes the trigger and cleanup timers of `w` for the current key.
    fn delete_timers(&mut self, key_group: KeyGroup, w: &TimeWindow) -> Result<(), TaskError> {
        let domain = self.domain();
        for at in [w.max_timestamp(), self.cleanup_time(w)] {
            let timer = self.timer(key_group, &self.key_buf, at, w);
            self.timers
                .delete(self.store.backend(), domain, &timer)
                .map_err(|e| self.state_err(e))?;
        }
        Ok(())
    }

    /// Emits window `w` of `key` (the store's current key).
    fn emit(&mut self, key: &K, w: TimeWindow) -> Result<(), TaskError> {
        let mut out = Output {
            next: self.next.as_mut(),
            timestamp: w.max_timestamp(),
        };
        self.contents
            .emit(&self.uid, &mut self.store, &w.namespace(), key, w, &mut out)
    }

    /// Adds `value` to window `w` of the current key, fires the window at once when its
    /// trigger time has passed (a late record within the allowed lateness), and sets its
    /// timers.
    fn add_to_window(
        &mut self,
        key: &K,
        key_group: KeyGroup,
        w: TimeWindow,
        value: T,
    ) -> Result<(), TaskError> {
        self.contents
            .add(&mut self.store, &w.namespace(), value)
            .map_err(|e| self.state_err(e))?;
        if self.domain() == TimeDomain::EventTime && w.max_timestamp() <= self.watermark {
            // Within the allowed lateness: fire now; only the cleanup timer stays to come.
            self.emit(key, w)?;
            return self.register_timer(key_group, self.cleanup_time(&w), &w);
        }
        self.register_timer(key_group, w.max_timestamp(), &w)?;
        self.register_timer(key_group, self.cleanup_time(&w), &w)
    }

    /// Merges the record's session window `w` into the current key's sessions and adds
    /// `value` to the session it belongs to; false when that session is late.
    fn add_to_session(
        &mut self,
        key: &K,
        key_group: KeyGroup,
        w: TimeWindow,
        value: T,
    ) -> Result<bool, TaskError> {
        let read = session_state(&self.sessions).get(&mut self.store, &[]);
        let mut sessions = read.map_err(|e| self.state_err(e))?.unwrap_or_default();
        let merge = add_window(&mut sessions, w);
        if merge.changed && merge.merged.is_empty() && self.is_window_late(&merge.result) {
            // A new session that is late already: nothing of it is kept.
            return Ok(false);
        }
        let into = merge.result.namespace();
        for old in &merge.merged {
            self.contents
                .merge(&mut self.store, &old.namespace(), &into)
                .map_err(|e| self.state_err(e))?;
            self.delete_timers(key_group, old)?;
        }
        if merge.changed {
            let write = session_state(&self.sessions).update(&mut self.store, &[], &sessions);
            write.map_err(|e| self.state_err(e))?;
        }
        self.add_to_window(key, key_group, merge.result, value)?;
        Ok(true)
    }

    /// A timer of window `w` fired at `at` for `key` (the store's current key): emits the
    /// window at its trigger time, removes its contents (and session) at its cleanup time.
    fn on_timer(&mut self, key: &K, at: Timestamp, w: TimeWindow) -> Result<(), TaskError> {
        let cleanup = at == self.cleanup_time(&w);
        if at == w.max_timestamp() {
            self.emit(key, w)?;
        }
        if !cleanup {
            return Ok(());
        }
        self.contents
            .clear(&mut self.store, &w.namespace())
            .map_err(|e| self.state_err(e))?;
        if let Some(state) = &self.sessions {
            let mut sessions = state
                .get(&mut self.store, &[])
                .map_err(|e| self.state_err(e))?
                .unwrap_or_default();
            sessions.retain(|s| *s != w);
            let r = if sessions.is_empty() {
                state.clear(&mut self.store, &[])
            } else {
                state.update(&mut self.store, &[], &sessions)
            };
            r.map_err(|e| self.state_err(e))?;
        }
        Ok(())
    }

    /// Fires the timers of the assigner's domain due at `upto`, in timestamp order.
    fn fire(&mut self, domain: TimeDomain, upto: Timestamp) -> Result<(), TaskError> {
        loop {
            let Some(timer) = self
                .timers
                .pop_due(self.store.backend(), domain, upto)
                .map_err(|e| self.state_err(e))?
            else {
                return Ok(());
            };
            let key = K::decode(&timer.key).map_err(|e| {
                TaskError::Restore(format!("operator `{}`: timer key: {e}", self.uid))
            })?;
            let w = TimeWindow::from_namespace(&timer.namespace).ok_or_else(|| {
                TaskError::Restore(format!(
                    "operator `{}`: a timer's namespace is not a window",
                    self.uid
                ))
            })?;
            self.store.set_current_key(timer.key_group, &timer.key);
            self.key_buf.clear();
            self.key_buf.extend_from_slice(&timer.key);
            self.on_timer(&key, timer.timestamp, w)?;
        }
    }
}

impl<K: Key, T: Clone + 'static, C: WindowContents<K, T>> Collector<KeyedRecord<K, T>>
    for WindowOperator<K, T, C>
{
    fn record(&mut self, ts: Timestamp, rec: KeyedRecord<K, T>) -> Result<(), TaskError> {
        self.key_buf.clear();
        rec.key.encode(&mut self.key_buf);
        self.store.set_current_key(rec.key_group, &self.key_buf);
        let time = match self.domain() {
            TimeDomain::EventTime => ts,
            TimeDomain::ProcessingTime => (self.clock)(),
        };
        let mut windows = std::mem::take(&mut self.windows);
        self.settings.assigner.assign(time, &mut windows);
        let mut kept = false;
        let result = (|| {
            if self.sessions.is_some() {
                for w in &windows {
                    kept |= self.add_to_session(&rec.key, rec.key_group, *w, rec.value.clone())?;
                }
            } else {
                for w in &windows {
                    if self.is_window_late(w) {
                        continue;
                    }
                    kept = true;
                    self.add_to_window(&rec.key, rec.key_group, *w, rec.value.clone())?;
                }
            }
            Ok::<(), TaskError>(())
        })();
        self.windows = windows;
        result?;
        let late = !kept
            && self.domain() == TimeDomain::EventTime
            && ts.saturating_add(self.settings.allowed_lateness_ms) <= self.watermark;
        if late {
            match self.settings.late_tag {
                Some(id) => self
                    .sides
                    .emit(&self.uid, &OutputTag::new(id), ts, rec.value)?,
                None => OperatorCounters::add(&self.counters.late_records, 1),
            }
        }
        Ok(())
    }

    fn watermark(&mut self, watermark: Timestamp) -> Result<(), TaskError> {
        if watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        match self.domain() {
            TimeDomain::EventTime => self.fire(TimeDomain::EventTime, watermark)?,
            // The final watermark: the input ended, so every pending processing-time window
            // fires now, before the final checkpoint, rather than never.
            TimeDomain::ProcessingTime if watermark == MAX_WATERMARK => {
                self.fire(TimeDomain::ProcessingTime, Timestamp::MAX)?
            }
            TimeDomain::ProcessingTime => {}
        }
        self.metrics.set_watermark(self.subtask, watermark);
        self.next.watermark(watermark)?;
        self.sides.watermark(watermark)
    }

    fn checkpoint(
        &mut self,
        barrier: CheckpointBarrier,
        out: &mut Vec<OperatorSnapshot>,
    ) -> Result<(), TaskError> {
        out.push(crate::operators::keyed_snapshot(
            &self.uid,
            &mut self.store,
            barrier,
        )?);
        self.next.checkpoint(barrier, out)?;
        self.sides.checkpoint(barrier, out)
    }

    fn checkpoint_complete(&mut self, id: u64) -> Result<(), TaskError> {
        self.next.checkpoint_complete(id)?;
        self.sides.checkpoint_complete(id)
    }

    fn end_of_input(&mut self) -> Result<(), TaskError> {
        self.next.end_of_input()?;
        self.sides.end_of_input()
    }

    fn processing_time(&mut self, now: Timestamp) -> Result<(), TaskError> {
        if self.domain() == TimeDomain::ProcessingTime {
            self.fire(TimeDomain::ProcessingTime, now)?;
        }
        Ok(())
    }

    fn next_processing_timer(&self) -> Option<Timestamp> {
        self.timers.next(TimeDomain::ProcessingTime)
    }
}
