//! weir-operator: the Kubernetes controller for `StreamJob` resources.
//!
//! Observe -> decide -> act, with the decision a pure function ([`decide::decide`]) of the
//! desired spec, the status (the operator's write-ahead log), what was observed, and the
//! time. Its inputs and outputs are in [`model`]; [`diff`] classifies spec changes;
//! [`conditions`] derives the kstatus conditions. The shells that observe and act (the
//! Kubernetes controller, and the process driver the tests use) only carry out
//! [`model::Action`]s and report [`model::Observed`].

pub mod conditions;
pub mod decide;
pub mod diff;
pub mod model;

pub use weir_crds as crds;
