//! The one error type of the harness. The binary maps each variant to an exit code in one place.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from the user: flags, mode names, files. Exit code 2.
    #[error("{0}")]
    Usage(String),
    /// Something the machine lacks or refuses (Docker, kind, the node image). Exit code 3.
    #[error("{0}")]
    Environment(String),
    /// `kind create cluster` failed; its logs were exported before the cluster was removed.
    #[error("creating cluster {name} failed: {cause} (kind output: {kind_log}; exported logs: {exported_logs})")]
    ClusterCreate { name: String, cause: String, kind_log: PathBuf, exported_logs: PathBuf },
    /// A bounded wait expired; says what it waited for and the last state it saw.
    #[error("timed out after {seconds}s waiting for {what}; last seen: {last_seen}")]
    Timeout { what: String, seconds: u64, last_seen: String },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("kubeconfig {path}: {cause}")]
    Kubeconfig { path: PathBuf, cause: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

impl Error {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
