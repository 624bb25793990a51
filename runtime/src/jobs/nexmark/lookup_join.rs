//! The unbounded keyed join of q3 and q20: one element per key on the first input (a person
//! per id, an auction per id) joined with every element of the second input with that key,
//! whichever arrives first.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::{
    Context, Key, KeyedCoProcessFunction, ListStateDescriptor, OpenContext, Output, TaskError,
    ValueStateDescriptor,
};

/// A keyed co-process function emitting `(first, second)` for each second-input element and
/// the first-input element of its key. The first input's element is kept in value state as
/// `Some` when `keep` accepts it, else as `None`, a marker after which that key's
/// second-input elements are dropped (so they do not wait for ever); second-input elements
/// that arrive before it wait in list state and are emitted, in arrival order, when it comes.
/// State is never cleared: the first input is expected once per key (a later one replaces
/// it for elements still to come).
pub struct LookupJoin<K, L, R> {
    /// Name of the value state holding the first input's element.
    first: &'static str,
    /// Name of the list state of second-input elements waiting for it.
    waiting: &'static str,
    keep: fn(&L) -> bool,
    _t: PhantomData<fn() -> (K, R)>,
}

impl<K, L, R> LookupJoin<K, L, R> {
    /// The join with its states named `first` (value state of `Option<L>`) and `waiting`
    /// (list state of `R`), keeping first-input elements that `keep` accepts.
    pub fn new(first: &'static str, waiting: &'static str, keep: fn(&L) -> bool) -> Self {
        Self {
            first,
            waiting,
            keep,
            _t: PhantomData,
        }
    }

    fn first_state(&self) -> ValueStateDescriptor<Option<L>> {
        ValueStateDescriptor::new(self.first)
    }

    fn waiting_state(&self) -> ListStateDescriptor<R> {
        ListStateDescriptor::new(self.waiting)
    }
}

impl<K, L, R> Clone for LookupJoin<K, L, R> {
    fn clone(&self) -> Self {
        Self::new(self.first, self.waiting, self.keep)
    }
}

impl<K, L, R> KeyedCoProcessFunction for LookupJoin<K, L, R>
where
    K: Key,
    L: Serialize + DeserializeOwned + Clone + Send + 'static,
    R: Serialize + DeserializeOwned + Clone + Send + 'static,
{
    type Key = K;
    type In1 = L;
    type In2 = R;
    type Out = (L, R);

    fn open(&mut self, ctx: &mut OpenContext<'_>) -> Result<(), TaskError> {
        ctx.declare(&self.first_state())?;
        ctx.declare(&self.waiting_state())
    }

    fn process_element1(
        &mut self,
        first: L,
        ctx: &mut Context<'_, K>,
        out: &mut Output<'_, (L, R)>,
    ) -> Result<(), TaskError> {
        let waiting = ctx.list(&self.waiting_state()).get()?;
        if !waiting.is_empty() {
            ctx.list(&self.waiting_state()).clear()?;
        }
        let kept = (self.keep)(&first).then_some(first);
        if let Some(first) = &kept {
            for second in waiting {
                out.collect((first.clone(), second))?;
            }
        }
        ctx.value(&self.first_state()).update(&kept)
    }

    fn process_element2(
        &mut self,
        second: R,
        ctx: &mut Context<'_, K>,
        out: &mut Output<'_, (L, R)>,
    ) -> Result<(), TaskError> {
        match ctx.value(&self.first_state()).get()? {
            Some(Some(first)) => out.collect((first, second)),
            Some(None) => Ok(()),
            None => ctx.list(&self.waiting_state()).add(&second),
        }
    }
}
