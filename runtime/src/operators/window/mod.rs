//! Window operators (see [`crate::api::WindowAssigner`] for the semantics).
//!
//! - [`operator`]: the general window operator on the timer service: any assigner, `reduce`,
//!   `aggregate` or `process`, allowed lateness, the late side output, merging sessions.
//! - [`contents`]: what a window keeps in keyed state for each kind of window function.
//! - [`sessions`]: the pure merge of a record's session window into its key's sessions.
//! - [`sliced_aggregate`]: the fast path for event-time tumbling and sliding `aggregate`
//!   without lateness (sliding windows sliced; timers derived from the state instead of
//!   stored).

pub mod contents;
pub mod operator;
pub mod sessions;
pub mod sliced_aggregate;
