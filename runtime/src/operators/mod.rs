//! Operators, one file per operator, each implementing the [`Collector`](crate::api::Collector)
//! hooks and passing its output to the next operator of its chain.

pub mod keyed_process;
pub mod stateless;
pub mod window;
