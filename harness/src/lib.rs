//! dualstack's harness, in layers that depend downwards only:
//!
//! - `mode`, `table` (the YAML model, loader, placeholders, selection) and `plan` (the run plan as
//!   a value): pure, no Kubernetes;
//! - `kind`, `host`, `cluster`, `detect`, `probe_pod`, `objects`, `retry`, `wait`: clusters and the
//!   kube client;
//! - `checks` (the Service and data-plane check kinds) and `verify` (the readiness check);
//! - `runner` (one mode's cases through their check kinds) and `session` (clusters, modes, jobs,
//!   interrupts) on top.
#![forbid(unsafe_code)]

pub mod checks;
mod choice;
pub mod cluster;
pub mod cni;
pub mod convert;
pub mod detect;
pub mod error;
pub mod host;
pub mod kind;
pub mod load_balancer;
pub mod network_policy;
pub mod machine;
pub mod mode;
pub mod objects;
pub mod plan;
pub mod prepare;
pub mod probe_pod;
mod process_group;
pub mod retry;
pub mod runner;
pub mod session;
pub mod table;
pub mod verify;
pub mod wait;

pub use error::{Error, Result};
pub use mode::{IpFamily, Mode};
