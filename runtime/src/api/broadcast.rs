//! The broadcast state pattern (Flink's `BroadcastStream` and `KeyedBroadcastProcessFunction`):
//! a low-volume stream (rules, thresholds, configuration) is broadcast to every subtask of a
//! keyed operator, which keeps what it learns from it in *broadcast state* (maps declared with
//! [`MapStateDescriptor`]s) and reads that state while it processes the keyed stream.
//!
//! ```ignore
//! const RULES: MapStateDescriptor<String, Rule> = MapStateDescriptor::new("rules");
//! let rules = rule_stream.broadcast(&RULES);
//! events
//!     .key_by(|e: &Event| e.account.clone())
//!     .connect_broadcast(&rules)
//!     .process("apply-rules", ApplyRules);
//! ```
//!
//! Every subtask receives every broadcast element and must update its broadcast state the
//! same way (from the element alone), so that all copies are equal; keyed elements see the
//! state read-only. The state is checkpointed once (by subtask 0, as union-redistributed
//! operator state of the operator's uid, one entry `[key, value]` per map entry, JSON) and
//! restored whole to every subtask at any parallelism.

use std::any::Any;
use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::process::{Context, OpenContext, Output, OutputTag, SideOutputs};
use super::state::{MapStateDescriptor, StateDescriptor};
use super::{
    Key, KeyedRecord, OperatorListState, OperatorStateMap, RedistributionMode, TaskError, Timestamp,
};

/// What a keyed broadcast operator receives: a record of the keyed stream, or an element of
/// the broadcast stream.
#[derive(Debug, Clone)]
pub(crate) enum Connected<K, T, B> {
    Keyed(KeyedRecord<K, T>),
    Broadcast(B),
}

/// The operator-state list under which broadcast state `name` is checkpointed.
pub(crate) fn list_name(name: &str) -> String {
    format!("broadcast/{name}")
}

/// One map of broadcast state, typed behind `Any`, with how to checkpoint it.
pub(crate) struct Slot {
    map: Box<dyn Any + Send>,
    snapshot: fn(&dyn Any) -> Result<Vec<serde_json::Value>, serde_json::Error>,
}

/// How a broadcast stream's descriptor opens its map: empty, or from restored entries.
pub(crate) type SlotOpener =
    fn(&'static str, Option<&Vec<serde_json::Value>>) -> Result<(&'static str, Slot), String>;

fn open_slot<K, V>(
    name: &'static str,
    restored: Option<&Vec<serde_json::Value>>,
) -> Result<(&'static str, Slot), String>
where
    K: Ord + Serialize + DeserializeOwned + Send + 'static,
    V: Serialize + DeserializeOwned + Send + 'static,
{
    let mut map = BTreeMap::<K, V>::new();
    for entry in restored.into_iter().flatten() {
        let (k, v): (K, V) = serde_json::from_value(entry.clone()).map_err(|e| e.to_string())?;
        map.insert(k, v);
    }
    let snapshot = |any: &dyn Any| {
        let map = any
            .downcast_ref::<BTreeMap<K, V>>()
            .expect("invariant: a slot holds the map of its descriptor's types");
        map.iter().map(serde_json::to_value).collect()
    };
    Ok((
        name,
        Slot {
            map: Box::new(map),
            snapshot,
        },
    ))
}

/// The broadcast state of one subtask: one map per descriptor the broadcast stream declared.
/// Read it with [`BroadcastState::get`] (everywhere) and change it with
/// [`BroadcastState::get_mut`] (only while processing a broadcast element, where the function
/// receives it mutably).
pub struct BroadcastState {
    uid: String,
    maps: BTreeMap<&'static str, Slot>,
}

impl BroadcastState {
    /// Opens the maps `openers` declare, from the operator state restored for `uid`.
    ///
    /// # Errors
    /// [`TaskError::Restore`] when a restored entry does not decode as the descriptor's types.
    pub(crate) fn open(
        uid: &str,
        openers: &[(&'static str, SlotOpener)],
        restored: &OperatorStateMap,
    ) -> Result<Self, TaskError> {
        let mut maps = BTreeMap::new();
        for (name, open) in openers {
            let (name, slot) = open(name, restored.get(&list_name(name))).map_err(|e| {
                TaskError::Restore(format!("operator `{uid}`: broadcast state `{name}`: {e}"))
            })?;
            maps.insert(name, slot);
        }
        Ok(Self {
            uid: uid.to_string(),
            maps,
        })
    }

    fn undeclared(&self, name: &str) -> TaskError {
        TaskError::Graph(format!(
            "operator `{}`: broadcast state `{name}` is not declared; pass its descriptor to `Stream::broadcast`",
            self.uid
        ))
    }

    /// The map of `descriptor`, read-only.
    ///
    /// # Errors
    /// [`TaskError::Graph`] when the broadcast stream did not declare `descriptor`, or
    /// declared it with other types.
    pub fn get<K: 'static, V: 'static>(
        &self,
        descriptor: &MapStateDescriptor<K, V>,
    ) -> Result<&BTreeMap<K, V>, TaskError>
    where
        MapStateDescriptor<K, V>: StateDescriptor,
    {
        let name = descriptor.name();
        self.maps
            .get(name)
            .and_then(|s| s.map.downcast_ref())
            .ok_or_else(|| self.undeclared(name))
    }

    /// The map of `descriptor`, to change.
    ///
    /// # Errors
    /// As [`BroadcastState::get`].
    pub fn get_mut<K: 'static, V: 'static>(
        &mut self,
        descriptor: &MapStateDescriptor<K, V>,
    ) -> Result<&mut BTreeMap<K, V>, TaskError>
    where
        MapStateDescriptor<K, V>: StateDescriptor,
    {
        let name = descriptor.name();
        if !self.maps.contains_key(name) {
            return Err(self.undeclared(name));
        }
        let uid = self.uid.clone();
        self.maps
            .get_mut(name)
            .and_then(|s| s.map.downcast_mut())
            .ok_or_else(|| {
                TaskError::Graph(format!(
                    "operator `{uid}`: broadcast state `{name}` is read with other types than declared"
                ))
            })
    }

    /// The operator-state lists of a checkpoint: every map, union-redistributed.
    ///
    /// # Errors
    /// [`TaskError::Data`] when an entry does not serialize to JSON.
    pub(crate) fn snapshot(&self) -> Result<BTreeMap<String, OperatorListState>, TaskError> {
        self.maps
            .iter()
            .map(|(name, slot)| {
                let entries = (slot.snapshot)(slot.map.as_ref()).map_err(|e| {
                    TaskError::Data(format!(
                        "operator `{}`: broadcast state `{name}`: {e}",
                        self.uid
                    ))
                })?;
                Ok((
                    list_name(name),
                    OperatorListState {
                        mode: RedistributionMode::Union,
                        entries,
                    },
                ))
            })
            .collect()
    }
}

/// A stream whose every element goes to every subtask of the operator it is connected to,
/// with the broadcast state it declares (Flink's `BroadcastStream`). Made by
/// [`super::Stream::broadcast`]; connect it to a keyed stream with
/// [`super::KeyedStream::connect_broadcast`].
pub struct BroadcastStream<B> {
    pub(crate) upstream: super::Stream<B>,
    pub(crate) descriptors: Vec<(&'static str, SlotOpener)>,
}

impl<B> BroadcastStream<B> {
    pub(crate) fn new<K, V>(
        upstream: super::Stream<B>,
        descriptor: &MapStateDescriptor<K, V>,
    ) -> Self
    where
        K: Ord + Serialize + DeserializeOwned + Send + 'static,
        V: Serialize + DeserializeOwned + Send + 'static,
    {
        Self {
            upstream,
            descriptors: vec![(descriptor.name(), open_slot::<K, V>)],
        }
    }

    /// Declares one more map of broadcast state.
    pub fn and<K, V>(mut self, descriptor: &MapStateDescriptor<K, V>) -> Self
    where
        K: Ord + Serialize + DeserializeOwned + Send + 'static,
        V: Serialize + DeserializeOwned + Send + 'static,
    {
        self.descriptors
            .push((descriptor.name(), open_slot::<K, V>));
        self
    }
}

/// What a function sees while it processes a broadcast element: its time and side outputs
/// (no key, no keyed state: the element is not keyed).
pub struct BroadcastContext<'a> {
    pub(crate) uid: &'a str,
    pub(crate) subtask: u32,
    pub(crate) timestamp: Timestamp,
    pub(crate) watermark: Timestamp,
    pub(crate) sides: &'a mut SideOutputs,
}

impl BroadcastContext<'_> {
    /// Event time of the element (ms).
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The latest watermark this subtask passed on (ms; `i64::MIN` before the first).
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }

    /// This subtask's index.
    pub fn subtask(&self) -> u32 {
        self.subtask
    }

    /// Emits `value` to side output `tag` with the element's timestamp.
    ///
    /// # Errors
    /// As [`Context::output`].
    pub fn output<T: 'static>(&mut self, tag: &OutputTag<T>, value: T) -> Result<(), TaskError> {
        self.sides.emit(self.uid, tag, self.timestamp, value)
    }
}

/// A function over a keyed stream connected to a broadcast stream (Flink's
/// `KeyedBroadcastProcessFunction`): keyed records with their key's state and timers and the
/// broadcast state read-only; broadcast elements with the broadcast state to change. One
/// instance per subtask.
///
/// Every method may fail with a [`TaskError`]; the job then restarts from its latest
/// checkpoint.
pub trait KeyedBroadcastProcessFunction: Clone + Send + Sync + 'static {
    /// The key of the keyed stream.
    type Key: Key;
    /// Records of the keyed stream.
    type In: Clone + Send + Serialize + DeserializeOwned + 'static;
    /// Elements of the broadcast stream.
    type Broadcast: Clone + Send + Serialize + DeserializeOwned + 'static;
    /// Main output records.
    type Out: Clone + Send + 'static;

    /// Declares the keyed states (as [`super::KeyedProcessFunction::open`]).
    ///
    /// # Errors
    /// See the trait.
    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
        let _ = ctx;
        Ok(())
    }

    /// Processes a record of the keyed stream.
    ///
    /// # Errors
    /// See the trait.
    fn process_element(
        &mut self,
        value: Self::In,
        ctx: &mut Context<'_, Self::Key>,
        broadcast: &BroadcastState,
        out: &mut Output<'_, Self::Out>,
    ) -> Result<(), TaskError>;

    /// Processes an element of the broadcast stream; every subtask receives it.
    ///
    /// # Errors
    /// See the trait.
    fn process_broadcast_element(
        &mut self,
        value: Self::Broadcast,
        ctx: &mut BroadcastContext<'_>,
        broadcast: &mut BroadcastState,
        out: &mut Output<'_, Self::Out>,
    ) -> Result<(), TaskError>;

    /// A timer of the current key fired.
    ///
    /// # Errors
    /// See the trait.
    fn on_timer(
        &mut self,
        timestamp: Timestamp,
        ctx: &mut Context<'_, Self::Key>,
        broadcast: &BroadcastState,
        out: &mut Output<'_, Self::Out>,
    ) -> Result<(), TaskError> {
        let _ = (timestamp, ctx, broadcast, out);
        Ok(())
    }
}

/// A keyed stream connected to a broadcast stream, to be processed by a
/// [`KeyedBroadcastProcessFunction`] (Flink's `BroadcastConnectedStream`).
pub struct BroadcastConnectedStream<K, T, B> {
    pub(crate) keyed: super::KeyedStream<K, T>,
    pub(crate) broadcast: BroadcastStream<B>,
}
