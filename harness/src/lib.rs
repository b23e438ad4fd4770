//! dualstack's harness: cluster lifecycle (KIND through its CLI, or an existing kubeconfig), the
//! kube client, probe orchestration and cluster verification.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod error;
pub mod host;
pub mod kind;
pub mod mode;
pub mod probe_pod;
pub mod verify;

pub use error::{Error, Result};
pub use mode::{IpFamily, Mode};
pub mod scenario;
pub mod detect;
pub mod services;
pub mod runner;
pub mod dataplane;
pub mod session;
pub mod retry;
pub mod objects;
