//! What a window keeps in keyed state, per kind of window function, in the namespace of the
//! window ([`TimeWindow::namespace`]): an accumulator (`aggregate`), a folded value
//! (`reduce`), or every element (`process`).

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::{
    AggregateFunction, Key, Output, ProcessWindowFunction, TaskError, TimeWindow, WindowResult,
};
use crate::state::typed::{AggregatingState, ListState, ReducingState};
use crate::state::{KeyedStateStore, StateError, StateInfo, StateKind};

/// Name of the accumulators of `aggregate` windows.
pub const ACCUMULATORS: &str = "window-accumulators";
/// Name of the folded values of `reduce` windows.
pub const REDUCED: &str = "window-reduced";
/// Name of the elements of `process` windows.
pub const ELEMENTS: &str = "window-elements";

/// The state a window function keeps per key and window, and how a fired window turns it into
/// output. Every method works on the store's current key.
pub trait WindowContents<K, T>: Send + 'static {
    /// Output records.
    type Out: Send + 'static;

    /// Adds `value` to the window `ns`.
    ///
    /// # Errors
    /// Backend or codec failures.
    fn add(&self, s: &mut KeyedStateStore, ns: &[u8], value: T) -> Result<(), StateError>;

    /// Moves the contents of window `from` into window `into` (merging sessions).
    ///
    /// # Errors
    /// Backend or codec failures.
    fn merge(&self, s: &mut KeyedStateStore, from: &[u8], into: &[u8]) -> Result<(), StateError>;

    /// Removes the contents of window `ns`.
    ///
    /// # Errors
    /// Backend failures.
    fn clear(&self, s: &mut KeyedStateStore, ns: &[u8]) -> Result<(), StateError>;

    /// Emits the result of `window` (namespace `ns`) for `key`, if it has contents.
    ///
    /// # Errors
    /// [`TaskError::State`] for backend failures (`uid` names the operator); what the user's
    /// function or the next operator returns.
    fn emit(
        &mut self,
        uid: &str,
        s: &mut KeyedStateStore,
        ns: &[u8],
        key: &K,
        window: TimeWindow,
        out: &mut Output<'_, Self::Out>,
    ) -> Result<(), TaskError>;
}

/// `map_err` adapter: a state backend error of operator `uid` as [`TaskError::State`].
pub(super) fn state_err(uid: &str) -> impl FnOnce(StateError) -> TaskError + '_ {
    move |source| TaskError::State {
        uid: uid.to_string(),
        source,
    }
}

/// `aggregate`: one accumulator per window.
pub struct Aggregated<A: AggregateFunction> {
    state: AggregatingState<A>,
}

impl<A: AggregateFunction> Aggregated<A> {
    /// Registers (or, after a restore, finds) the accumulators in `store`.
    ///
    /// # Errors
    /// [`StateError::KindMismatch`] when the name exists with another kind.
    pub fn open(store: &mut KeyedStateStore, function: Arc<A>) -> Result<Self, StateError> {
        Ok(Self {
            state: store.aggregating_state(ACCUMULATORS, None, function)?,
        })
    }

    /// The state this kind declares.
    pub fn info() -> StateInfo {
        StateInfo::new(ACCUMULATORS, StateKind::Aggregating)
    }
}

impl<K, A> WindowContents<K, A::In> for Aggregated<A>
where
    K: Key,
    A: AggregateFunction,
    A::Out: Clone,
{
    type Out = WindowResult<K, A::Out>;

    fn add(&self, s: &mut KeyedStateStore, ns: &[u8], value: A::In) -> Result<(), StateError> {
        self.state.add(s, ns, &value).map(|_| ())
    }

    fn merge(&self, s: &mut KeyedStateStore, from: &[u8], into: &[u8]) -> Result<(), StateError> {
        self.state.merge_namespaces(s, from, into)
    }

    fn clear(&self, s: &mut KeyedStateStore, ns: &[u8]) -> Result<(), StateError> {
        self.state.clear(s, ns)
    }

    fn emit(
        &mut self,
        uid: &str,
        s: &mut KeyedStateStore,
        ns: &[u8],
        key: &K,
        window: TimeWindow,
        out: &mut Output<'_, Self::Out>,
    ) -> Result<(), TaskError> {
        match self.state.get(s, ns).map_err(state_err(uid))? {
            Some(value) => out.collect(WindowResult {
                key: key.clone(),
                window,
                value,
            }),
            None => Ok(()),
        }
    }
}

/// `reduce`: one folded value per window.
pub struct Reduced<T> {
    state: ReducingState<T>,
}

impl<T: Serialize + DeserializeOwned + 'static> Reduced<T> {
    /// Registers (or finds) the folded values in `store`, folded with `reduce`.
    ///
    /// # Errors
    /// [`StateError::KindMismatch`] when the name exists with another kind.
    pub fn open(
        store: &mut KeyedStateStore,
        reduce: impl Fn(T, T) -> T + Send + Sync + 'static,
    ) -> Result<Self, StateError> {
        Ok(Self {
            state: store.reducing_state(REDUCED, None, reduce)?,
        })
    }

    /// The state this kind declares.
    pub fn info() -> StateInfo {
        StateInfo::new(REDUCED, StateKind::Reducing)
    }
}

impl<K, T> WindowContents<K, T> for Reduced<T>
where
    K: Key,
    T: Clone + Send + Serialize + DeserializeOwned + 'static,
{
    type Out = WindowResult<K, T>;

    fn add(&self, s: &mut KeyedStateStore, ns: &[u8], value: T) -> Result<(), StateError> {
        self.state.add(s, ns, value)
    }

    fn merge(&self, s: &mut KeyedStateStore, from: &[u8], into: &[u8]) -> Result<(), StateError> {
        if let Some(moved) = self.state.get(s, from)? {
            self.state.add(s, into, moved)?;
            self.state.clear(s, from)?;
        }
        Ok(())
    }

    fn clear(&self, s: &mut KeyedStateStore, ns: &[u8]) -> Result<(), StateError> {
        self.state.clear(s, ns)
    }

    fn emit(
        &mut self,
        uid: &str,
        s: &mut KeyedStateStore,
        ns: &[u8],
        key: &K,
        window: TimeWindow,
        out: &mut Output<'_, Self::Out>,
    ) -> Result<(), TaskError> {
        match self.state.get(s, ns).map_err(state_err(uid))? {
            Some(value) => out.collect(WindowResult {
                key: key.clone(),
                window,
                value,
            }),
            None => Ok(()),
        }
    }
}

/// `process`: every element of the window, given to a [`ProcessWindowFunction`] when it
/// fires.
pub struct Elements<P: ProcessWindowFunction> {
    state: ListState<P::In>,
    function: P,
    _k: PhantomData<fn() -> P::Key>,
}

impl<P: ProcessWindowFunction> Elements<P> {
    /// Registers (or finds) the element lists in `store`.
    ///
    /// # Errors
    /// [`StateError::KindMismatch`] when the name exists with another kind.
    pub fn open(store: &mut KeyedStateStore, function: P) -> Result<Self, StateError> {
        Ok(Self {
            state: store.list_state(ELEMENTS, None)?,
            function,
            _k: PhantomData,
        })
    }

    /// The state this kind declares.
    pub fn info() -> StateInfo {
        StateInfo::new(ELEMENTS, StateKind::List)
    }
}

impl<P: ProcessWindowFunction> WindowContents<P::Key, P::In> for Elements<P> {
    type Out = P::Out;

    fn add(&self, s: &mut KeyedStateStore, ns: &[u8], value: P::In) -> Result<(), StateError> {
        self.state.add(s, ns, &value)
    }

    fn merge(&self, s: &mut KeyedStateStore, from: &[u8], into: &[u8]) -> Result<(), StateError> {
        for value in self.state.get(s, from)? {
            self.state.add(s, into, &value)?;
        }
        self.state.clear(s, from)
    }

    fn clear(&self, s: &mut KeyedStateStore, ns: &[u8]) -> Result<(), StateError> {
        self.state.clear(s, ns)
    }

    fn emit(
        &mut self,
        uid: &str,
        s: &mut KeyedStateStore,
        ns: &[u8],
        key: &P::Key,
        window: TimeWindow,
        out: &mut Output<'_, Self::Out>,
    ) -> Result<(), TaskError> {
        let elements = self.state.get(s, ns).map_err(state_err(uid))?;
        if elements.is_empty() {
            return Ok(());
        }
        self.function.process(key, window, elements, out)
    }
}
