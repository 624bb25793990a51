//! weir-operator: the Kubernetes controller for `StreamJob` resources.
//!
//! Observe -> decide -> act, with the decision a pure function ([`decide::decide`]) of the
//! desired spec, the status (the operator's write-ahead log), what was observed, and the
//! time. Its inputs and outputs are in [`model`]; [`diff`] classifies spec changes;
//! [`conditions`] derives the kstatus conditions; [`build`] makes the Kubernetes objects
//! (pure). The shells only report [`model::Observed`] and carry out [`model::Action`]s: the
//! Kubernetes one is [`controller`] ([`observe`], [`apply`], [`coordinator_api`]); the
//! tests' process driver is in `e2e/`.

pub mod admin_token;
pub mod apply;
pub mod build;
pub mod conditions;
pub mod controller;
pub mod coordinator_api;
pub mod decide;
pub mod diff;
pub mod error;
pub mod metrics;
pub mod model;
pub mod names;
pub mod observe;
pub mod pod_failures;
pub mod resource;

pub use weir_crds as crds;

pub use weir_api_types::error_chain;
