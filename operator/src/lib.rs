//! weir-operator: the Kubernetes controller for `StreamJob` resources (observe -> decide ->
//! act, with the decision a pure function). The controller arrives with its own issue; this
//! crate currently exposes the manifest types it is built on.

pub use weir_crds as crds;
