//! Exchanges between tasks. The hash shuffle behind `key_by`: a router at the end of the
//! upstream chain routes each record to the subtask owning its key group; a forward exchange
//! (a union's inputs into a non-keyed operator) keeps records in their subtask; a rebalance
//! exchange deals them round-robin; a broadcast exchange sends every record to every subtask
//! (the broadcast state pattern). Records travel in
//! batches over bounded channels (a full channel blocks the producer: backpressure, never
//! unbounded buffering).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::wire::{
    decode_connected, decode_keyed, decode_plain, encode_connected, encode_keyed, encode_plain,
};
use super::Message;
use crate::api::broadcast::Connected;
use crate::api::graph::{AnyBox, Erased};
use crate::api::plan::{ExchangeBuilder, ExchangeEnds, Instantiation, Typed};
use crate::api::{
    CheckpointBarrier, Collector, Key, KeyedRecord, OperatorSnapshot, TaskError, Timestamp,
};
use crate::metrics::JobMetrics;
use crate::net::{ChannelId, CreditSender, InletSink, NetworkContext};
use crate::state::key_group::{key_group_for_bytes, subtask_for_key_group};

/// How messages of one exchange are written to and read from bytes (for channels that cross
/// processes).
pub(crate) struct Codec<T> {
    pub encode: fn(&Message<T>, &mut Vec<u8>),
    pub decode: fn(&[u8]) -> Result<Message<T>, String>,
}

/// The sending end of one shuffle channel: in-process (a bounded channel) or to another
/// worker (a credit-based TCP channel). Either way a full consumer blocks the producer.
pub(crate) enum Outlet<T> {
    /// Same process.
    Local(Sender<Message<T>>),
    /// Another worker.
    Remote {
        conn: CreditSender,
        encode: fn(&Message<T>, &mut Vec<u8>),
    },
}

impl<T> Outlet<T> {
    /// Sends `msg`; returns how long the send waited for buffer space (backpressure).
    fn send(&self, msg: Message<T>) -> Result<Duration, TaskError> {
        match self {
            Outlet::Local(tx) => match tx.try_send(msg) {
                Ok(()) => Ok(Duration::ZERO),
                Err(TrySendError::Full(msg)) => {
                    let started = Instant::now();
                    tx.send(msg).map_err(|_| TaskError::DownstreamGone)?;
                    Ok(started.elapsed())
                }
                Err(TrySendError::Disconnected(_)) => Err(TaskError::DownstreamGone),
            },
            Outlet::Remote { conn, encode } => {
                let mut bytes = Vec::with_capacity(64 << 10);
                bytes.extend_from_slice(&[0; 4]);
                encode(&msg, &mut bytes);
                conn.send(bytes).map_err(|_| TaskError::DownstreamGone)
            }
        }
    }
}

struct TypedInlet<T> {
    tx: Sender<Message<T>>,
    decode: fn(&[u8]) -> Result<Message<T>, String>,
}

impl<T: Send> InletSink for TypedInlet<T> {
    fn push(&self, frame: &[u8]) -> Result<(), String> {
        let msg = (self.decode)(frame)?;
        self.tx
            .send(msg)
            .map_err(|_| "the consumer task is gone".to_string())
    }
}

/// The channels of exchange number `exchange` between `parallelism` producer and consumer
/// subtasks, seen from the subtasks `local` of this process: `outlets[l][j]` sends from the
/// l-th local producer to consumer j, `inputs[l][i]` receives at the l-th local consumer from
/// producer i. Each channel buffers `capacity` batches. Without `net` every subtask is local.
///
/// # Errors
/// [`TaskError::Io`] when a peer worker's data server cannot be reached.
#[allow(clippy::type_complexity)]
pub(crate) fn build_exchange<T: Send + 'static>(
    exchange: u32,
    local: &[u32],
    parallelism: u32,
    capacity: usize,
    net: Option<&NetworkContext>,
    codec: Codec<T>,
) -> Result<(Vec<Vec<Outlet<T>>>, Vec<Vec<Receiver<Message<T>>>>), TaskError> {
    let is_local = |s: u32| local.contains(&s);
    let mut outlets: Vec<Vec<Option<Outlet<T>>>> = local
        .iter()
        .map(|_| (0..parallelism).map(|_| None).collect())
        .collect();
    let mut inputs: Vec<Vec<Receiver<Message<T>>>> = Vec::with_capacity(local.len());
    for &consumer in local {
        let mut of_consumer = Vec::with_capacity(parallelism as usize);
        for producer in 0..parallelism {
            let (tx, rx) = bounded(capacity);
            of_consumer.push(rx);
            if let Some(lp) = local.iter().position(|&s| s == producer) {
                outlets[lp][consumer as usize] = Some(Outlet::Local(tx));
            } else if let Some(net) = net {
                net.inlets.register(
                    ChannelId {
                        attempt: net.attempt,
                        exchange,
                        producer,
                        consumer,
                    },
                    Box::new(TypedInlet {
                        tx,
                        decode: codec.decode,
                    }),
                    capacity as u32,
                );
            }
        }
        inputs.push(of_consumer);
    }
    for (lp, &producer) in local.iter().enumerate() {
        for consumer in (0..parallelism).filter(|c| !is_local(*c)) {
            let net = net.expect("invariant: remote consumers exist only with a network");
            let peer = net.peers[consumer as usize];
            let channel = ChannelId {
                attempt: net.attempt,
                exchange,
                producer,
                consumer,
            };
            let conn =
                CreditSender::connect(peer, channel, Duration::from_secs(30), net.token.as_ref())
                    .map_err(|source| TaskError::Io {
                    action: "connect to the worker of a consumer subtask at",
                    path: peer.to_string(),
                    source,
                })?;
            outlets[lp][consumer as usize] = Some(Outlet::Remote {
                conn,
                encode: codec.encode,
            });
        }
    }
    let outlets = outlets
        .into_iter()
        .map(|o| {
            o.into_iter()
                .map(|x| x.expect("invariant: every consumer has an outlet"))
                .collect()
        })
        .collect();
    Ok((outlets, inputs))
}

/// Where a record goes: the consumer index and what travels to it.
pub(crate) trait Route: Send {
    /// Records the producer emits.
    type In;
    /// What travels on the channel.
    type Out: Send;
    /// The consumer (of `consumers`) that receives `value`, and its form on the channel.
    fn route(&mut self, value: Self::In, consumers: usize) -> (usize, Self::Out);
}

/// By key group of the record's key (`key_by`): the consumer that owns the key group.
pub(crate) struct ByKeyGroup<K, T> {
    selector: Arc<dyn Fn(&T) -> K + Send + Sync>,
    max_parallelism: u32,
    key_buf: Vec<u8>,
}

impl<K: Key, T: Send> Route for ByKeyGroup<K, T> {
    type In = T;
    type Out = KeyedRecord<K, T>;

    fn route(&mut self, value: T, consumers: usize) -> (usize, KeyedRecord<K, T>) {
        let key = (self.selector)(&value);
        self.key_buf.clear();
        key.encode(&mut self.key_buf);
        let key_group = key_group_for_bytes(&self.key_buf, self.max_parallelism);
        let target =
            subtask_for_key_group(key_group, self.max_parallelism, consumers as u32) as usize;
        (
            target,
            KeyedRecord {
                key_group,
                key,
                value,
            },
        )
    }
}

/// Records without keys, to the consumer with the producer's own index (forward).
pub(crate) struct Forward<T> {
    target: usize,
    _t: std::marker::PhantomData<fn(T)>,
}

impl<T: Send> Route for Forward<T> {
    type In = T;
    type Out = T;

    fn route(&mut self, value: T, _consumers: usize) -> (usize, T) {
        (self.target, value)
    }
}

/// Records without keys, to the consumers in turn (rebalance), starting at the producer's
/// own index so that producers do not all start at the same consumer.
pub(crate) struct RoundRobin<T> {
    next: usize,
    _t: std::marker::PhantomData<fn(T)>,
}

impl<T: Send> Route for RoundRobin<T> {
    type In = T;
    type Out = T;

    fn route(&mut self, value: T, consumers: usize) -> (usize, T) {
        let target = self.next % consumers;
        self.next = target + 1;
        (target, value)
    }
}

/// The sending side of one producer subtask of an exchange: a batch buffer per consumer;
/// watermarks, barriers, idleness and end of input go to every consumer after its batch, so
/// every channel keeps stream order.
pub(crate) struct Outlets<T> {
    outputs: Vec<Outlet<T>>,
    buffers: Vec<Vec<(Timestamp, T)>>,
    batch_size: usize,
    metrics: Arc<JobMetrics>,
    subtask: u32,
}

impl<T> Outlets<T> {
    pub fn new(
        outputs: Vec<Outlet<T>>,
        batch_size: usize,
        metrics: Arc<JobMetrics>,
        subtask: u32,
    ) -> Self {
        let buffers = outputs
            .iter()
            .map(|_| Vec::with_capacity(batch_size))
            .collect();
        Self {
            outputs,
            buffers,
            batch_size,
            metrics,
            subtask,
        }
    }

    fn consumers(&self) -> usize {
        self.outputs.len()
    }

    fn send(&self, target: usize, msg: Message<T>) -> Result<(), TaskError> {
        let waited = self.outputs[target].send(msg)?;
        if !waited.is_zero() {
            self.metrics.add_backpressure(self.subtask, waited);
        }
        Ok(())
    }

    /// Buffers `value` for consumer `target`, sending the batch once it is full.
    #[inline]
    fn push(&mut self, target: usize, ts: Timestamp, value: T) -> Result<(), TaskError> {
        self.buffers[target].push((ts, value));
        if self.buffers[target].len() >= self.batch_size {
            self.flush(target)?;
        }
        Ok(())
    }

    fn flush(&mut self, target: usize) -> Result<(), TaskError> {
        if self.buffers[target].is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(
            &mut self.buffers[target],
            Vec::with_capacity(self.batch_size),
        );
        self.send(target, Message::Records(batch))
    }

    fn send_to_all(&mut self, make: impl Fn() -> Message<T>) -> Result<(), TaskError> {
        for t in 0..self.outputs.len() {
            self.flush(t)?;
            self.send(t, make())?;
        }
        Ok(())
    }
}

/// The control events of a producer subtask's [`Outlets`], for every router.
macro_rules! forward_events_to_all {
    () => {
        fn watermark(&mut self, watermark: Timestamp) -> Result<(), TaskError> {
            self.outlets.send_to_all(|| Message::Watermark(watermark))
        }

        fn checkpoint(
            &mut self,
            barrier: CheckpointBarrier,
            _out: &mut Vec<OperatorSnapshot>,
        ) -> Result<(), TaskError> {
            self.outlets.send_to_all(|| Message::Barrier(barrier))
        }

        fn checkpoint_complete(&mut self, _id: u64) -> Result<(), TaskError> {
            Ok(())
        }

        fn end_of_input(&mut self) -> Result<(), TaskError> {
            self.outlets.send_to_all(|| Message::EndOfInput)
        }

        fn idle(&mut self) -> Result<(), TaskError> {
            self.outlets.send_to_all(|| Message::Idle)
        }
    };
}

/// The producer end of an exchange that sends each record to one consumer, chosen by `R`.
pub(crate) struct Router<R: Route> {
    route: R,
    outlets: Outlets<R::Out>,
}

impl<R: Route> Router<R> {
    pub fn new(
        route: R,
        outputs: Vec<Outlet<R::Out>>,
        batch_size: usize,
        metrics: Arc<JobMetrics>,
        subtask: u32,
    ) -> Self {
        Self {
            route,
            outlets: Outlets::new(outputs, batch_size, metrics, subtask),
        }
    }
}

impl<R: Route> Collector<R::In> for Router<R> {
    fn record(&mut self, ts: Timestamp, value: R::In) -> Result<(), TaskError> {
        let (target, out) = self.route.route(value, self.outlets.consumers());
        self.outlets.push(target, ts, out)
    }

    forward_events_to_all!();
}

/// The producer end of a broadcast exchange: every record to every consumer, as `into` makes
/// it (Flink's broadcast partitioning).
pub(crate) struct BroadcastRouter<T, O> {
    into: fn(T) -> O,
    outlets: Outlets<O>,
}

impl<T: Send, O: Clone + Send> Collector<T> for BroadcastRouter<T, O> {
    fn record(&mut self, ts: Timestamp, value: T) -> Result<(), TaskError> {
        let value = (self.into)(value);
        let last = self.outlets.consumers() - 1;
        for t in 0..last {
            self.outlets.push(t, ts, value.clone())?;
        }
        self.outlets.push(last, ts, value)
    }

    forward_events_to_all!();
}

/// The ends of exchange number `exchange` in this process, with channels carrying `O` coded
/// by `codec`: `producer` makes each local producer subtask's collector from its outlets.
fn exchange_ends<O: Send + 'static>(
    inst: &Instantiation,
    exchange: u32,
    codec: Codec<O>,
    producer: impl Fn(Vec<Outlet<O>>, &crate::api::TaskContext) -> Erased,
) -> Result<ExchangeEnds, TaskError> {
    let (senders, receivers) = build_exchange::<O>(
        exchange,
        &inst.local_subtasks(),
        inst.parallelism,
        inst.channel_capacity,
        inst.network.as_ref(),
        codec,
    )?;
    Ok(ExchangeEnds {
        producers: senders
            .into_iter()
            .zip(&inst.contexts)
            .map(|(outlets, ctx)| producer(outlets, ctx))
            .collect(),
        consumers: receivers
            .into_iter()
            .map(|r| Box::new(r) as AnyBox)
            .collect(),
    })
}

/// A route whose records are turned into another form for the channel.
struct MapRoute<R: Route, O> {
    inner: R,
    into: fn(R::Out) -> O,
}

impl<R: Route, O: Send> Route for MapRoute<R, O> {
    type In = R::In;
    type Out = O;

    fn route(&mut self, value: R::In, consumers: usize) -> (usize, O) {
        let (target, out) = self.inner.route(value, consumers);
        (target, (self.into)(out))
    }
}

/// The [`ExchangeBuilder`] of a hash exchange (`key_by`) of records `T` keyed by `selector`.
pub(crate) fn hash_exchange<K, T>(selector: Arc<dyn Fn(&T) -> K + Send + Sync>) -> ExchangeBuilder
where
    K: Key,
    T: Serialize + DeserializeOwned + Send + 'static,
{
    hash_exchange_wrapped::<K, T>(selector, Arc::new(|p| Typed::<T>::erase(p)))
}

/// The [`ExchangeBuilder`] of a hash exchange of records `E` keyed by `selector`, whose
/// producers emit `U` turned into `E` by `into` (the inputs of connected streams).
pub(crate) fn hash_exchange_from<K, U, T>(
    selector: Arc<dyn Fn(&T) -> K + Send + Sync>,
    into: fn(U) -> T,
) -> ExchangeBuilder
where
    K: Key,
    U: Send + 'static,
    T: Serialize + DeserializeOwned + Send + 'static,
{
    hash_exchange_wrapped::<K, T>(
        selector,
        Arc::new(move |partitioner| {
            Typed::<U>::erase(Box::new(crate::operators::stateless::Map {
                f: Arc::new(into),
                next: partitioner,
            }))
        }),
    )
}

fn by_key_group<K: Key, T>(
    selector: &Arc<dyn Fn(&T) -> K + Send + Sync>,
    ctx: &crate::api::TaskContext,
) -> ByKeyGroup<K, T> {
    ByKeyGroup {
        selector: selector.clone(),
        max_parallelism: ctx.max_parallelism,
        key_buf: Vec::with_capacity(32),
    }
}

/// A hash exchange of `T` whose producer ends are the routers wrapped by `wrap`.
fn hash_exchange_wrapped<K, T>(
    selector: Arc<dyn Fn(&T) -> K + Send + Sync>,
    wrap: Arc<dyn Fn(Box<dyn Collector<T>>) -> Erased + Send + Sync>,
) -> ExchangeBuilder
where
    K: Key,
    T: Serialize + DeserializeOwned + Send + 'static,
{
    Arc::new(move |inst: &Instantiation, exchange: u32| {
        let codec = Codec {
            encode: encode_keyed::<K, T>,
            decode: decode_keyed::<K, T>,
        };
        exchange_ends(inst, exchange, codec, |outlets, ctx| {
            wrap(Box::new(Router::new(
                by_key_group(&selector, ctx),
                outlets,
                inst.batch_size,
                ctx.metrics.clone(),
                ctx.subtask,
            )))
        })
    })
}

/// The [`ExchangeBuilder`] of an exchange of records `T` without keys, each producer subtask
/// routing with the route `route` makes for it.
fn plain_exchange<T, R>(route: fn(u32) -> R) -> ExchangeBuilder
where
    T: Serialize + DeserializeOwned + Send + 'static,
    R: Route<In = T, Out = T> + 'static,
{
    Arc::new(move |inst: &Instantiation, exchange: u32| {
        let codec = Codec {
            encode: encode_plain::<T>,
            decode: decode_plain::<T>,
        };
        exchange_ends(inst, exchange, codec, |outlets, ctx| {
            Typed::<T>::erase(Box::new(Router::new(
                route(ctx.subtask),
                outlets,
                inst.batch_size,
                ctx.metrics.clone(),
                ctx.subtask,
            )))
        })
    })
}

/// The [`ExchangeBuilder`] of a forward exchange of records `T` (between tasks: a union's
/// inputs into a non-keyed operator).
pub(crate) fn forward_exchange<T>() -> ExchangeBuilder
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    plain_exchange::<T, _>(|subtask| Forward {
        target: subtask as usize,
        _t: std::marker::PhantomData,
    })
}

/// The [`ExchangeBuilder`] of a rebalance exchange of records `T`: each producer subtask
/// sends its records to the consumers in turn.
pub(crate) fn rebalance_exchange<T>() -> ExchangeBuilder
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    plain_exchange::<T, _>(|subtask| RoundRobin {
        next: subtask as usize,
        _t: std::marker::PhantomData,
    })
}

fn connected_codec<K: Key, T, B>() -> Codec<Connected<K, T, B>>
where
    T: Serialize + DeserializeOwned,
    B: Serialize + DeserializeOwned,
{
    Codec {
        encode: encode_connected::<K, T, B>,
        decode: decode_connected::<K, T, B>,
    }
}

/// The [`ExchangeBuilder`] of the keyed input of a keyed broadcast operator: a hash exchange
/// of `T` keyed by `selector`, delivering [`Connected::Keyed`].
pub(crate) fn keyed_into_broadcast_exchange<K, T, B>(
    selector: Arc<dyn Fn(&T) -> K + Send + Sync>,
) -> ExchangeBuilder
where
    K: Key,
    T: Clone + Serialize + DeserializeOwned + Send + 'static,
    B: Clone + Serialize + DeserializeOwned + Send + 'static,
{
    Arc::new(move |inst: &Instantiation, exchange: u32| {
        exchange_ends(inst, exchange, connected_codec(), |outlets, ctx| {
            Typed::<T>::erase(Box::new(Router::new(
                MapRoute {
                    inner: by_key_group(&selector, ctx),
                    into: Connected::<K, T, B>::Keyed,
                },
                outlets,
                inst.batch_size,
                ctx.metrics.clone(),
                ctx.subtask,
            )))
        })
    })
}

/// The [`ExchangeBuilder`] of the broadcast input of a keyed broadcast operator: every
/// element of `B` to every subtask, as [`Connected::Broadcast`].
pub(crate) fn broadcast_exchange<K, T, B>() -> ExchangeBuilder
where
    K: Key,
    T: Clone + Serialize + DeserializeOwned + Send + 'static,
    B: Clone + Serialize + DeserializeOwned + Send + 'static,
{
    Arc::new(move |inst: &Instantiation, exchange: u32| {
        exchange_ends(inst, exchange, connected_codec(), |outlets, ctx| {
            Typed::<B>::erase(Box::new(BroadcastRouter {
                into: Connected::<K, T, B>::Broadcast,
                outlets: Outlets::new(outlets, inst.batch_size, ctx.metrics.clone(), ctx.subtask),
            }))
        })
    })
}
