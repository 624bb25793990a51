//! The operator on a real Kubernetes control plane.
//!
//! - [`control_plane`]: etcd, kube-apiserver, kube-controller-manager and kube-scheduler,
//!   built from pinned sources (`control-plane/`) and started with TLS by the test.
//! - [`agent`]: the node agent (`weir-node-agent`), the one stand-in: it registers a Node,
//!   runs the pods scheduled to it as processes in their own network namespaces, writes their
//!   status, and answers Service names over DNS.
//! - [`cluster`]: both together with an S3-compatible store, the chart installed as a user
//!   installs it, and `kubectl`.

pub mod agent;
pub mod cluster;
pub mod control_plane;
