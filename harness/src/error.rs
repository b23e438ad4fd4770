//! The one error type of the harness, with a variant per kind of failure and its source kept. The
//! binary maps each variant to an exit code in one place (`src/exit.rs`).

use crate::table::LoadError;
use crate::table::selection::SelectionError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A scenario table is malformed (names file, line, column and field). Bad input.
    #[error(transparent)]
    Table(#[from] LoadError),
    /// `--filter`, `--skip` or `--shard` does not parse. Bad input.
    #[error(transparent)]
    Selection(#[from] SelectionError),
    /// Any other bad input from the user: flags that do not go together, mode names, a report
    /// directory that cannot be written.
    #[error("{0}")]
    Usage(String),
    #[error("kubeconfig {path}: {cause}")]
    Kubeconfig { path: PathBuf, cause: String },
    /// The kubeconfig reads, but its API server does not answer (every cause in the chain).
    #[error("the API server {url} (kubeconfig {}) does not answer: {cause}", kubeconfig.display())]
    Unreachable { url: String, kubeconfig: PathBuf, cause: String },
    #[error("CNI manifest {path}: {message}")]
    CniManifest { path: PathBuf, message: String },
    /// `--load-image` / `--load-archive` names what cannot be loaded. Bad input.
    #[error("cannot load {image} into the nodes: {message}")]
    ImageToLoad { image: String, message: String },
    /// `cluster down` of a name with neither nodes nor files on this machine. Bad input.
    #[error("no cluster named {name} on this machine (no KIND nodes, no files in {dir})")]
    ClusterNotFound { name: String, dir: PathBuf },
    /// Something the machine lacks or refuses (Docker, kind, the node image).
    #[error("{0}")]
    Environment(String),
    /// `kind create cluster` failed; its logs were exported before the cluster was removed.
    #[error("creating cluster {name} failed: {cause} (kind output: {kind_log}; exported logs: {exported_logs})")]
    ClusterCreate { name: String, cause: String, kind_log: PathBuf, exported_logs: PathBuf },
    /// A command the harness runs (kind, docker) exited non-zero.
    #[error("{command} failed: {output}")]
    Command { command: String, output: String },
    /// The CNI phase failed: the install itself, or the nodes never became Ready after it.
    /// `details` (pods, events, log lines) go to the reports, not the one-line message.
    #[error("installing the CNI ({how}) failed: {cause}")]
    CniInstall { how: String, cause: String, details: String },
    /// Installing the created cluster's load balancer (MetalLB) failed, or it never became Ready.
    #[error("installing the load balancer failed: {cause}")]
    LoadBalancerInstall { cause: String },
    /// Installing the created cluster's NetworkPolicy agent failed, or it never became Ready.
    #[error("installing the NetworkPolicy agent failed: {cause}")]
    NetworkPolicyInstall { cause: String },
    /// A step of `cluster convert` (or of the conversion suite) failed; the cluster is left as the
    /// step found it, for a look.
    #[error("{0}")]
    Conversion(Box<ConversionFailure>),
    /// The cluster is not in the mode the run asked for.
    #[error("the cluster is {detected} (service ranges {ranges}), not {requested} as requested; refusing to run")]
    ModeMismatch { requested: String, detected: String, ranges: String },
    /// The cluster answered, but not like a Kubernetes cluster of any mode.
    #[error("cluster detection: {0}")]
    Detection(String),
    /// The probe printed something that is not its JSON answer.
    #[error("probe in pod {pod} printed {output:?}: {source}")]
    Probe { pod: String, output: String, source: serde_json::Error },
    /// A bounded wait expired; says what it waited for and the last state it saw.
    #[error("timed out after {seconds}s waiting for {what}; last seen: {last_seen}")]
    Timeout { what: String, seconds: u64, last_seen: String },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

impl Error {
    /// What the reports attach to the failed setup beyond the message.
    pub fn details(&self) -> Option<&str> {
        match self {
            Self::CniInstall { details, .. } if !details.is_empty() => Some(details),
            _ => None,
        }
    }

    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }

    /// Whether the user can fix this by changing what they passed (exit code 2), rather than the
    /// machine or cluster (exit code 3).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::Table(_) | Self::Selection(_) | Self::Usage(_) | Self::Kubeconfig { .. } | Self::CniManifest { .. } | Self::ImageToLoad { .. } | Self::ClusterNotFound { .. }
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a conversion stopped, and why.
#[derive(Debug)]
pub struct ConversionFailure {
    pub cluster: String,
    /// `ipv4 -> dual`.
    pub conversion: String,
    pub step: String,
    pub cause: String,
    /// The component's last log lines.
    pub logs: String,
    pub kubeconfig: String,
}

impl std::fmt::Display for ConversionFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { cluster, conversion, step, cause, logs, kubeconfig } = self;
        write!(
            f,
            "converting cluster {cluster} ({conversion}) failed at {step}: {cause}; the cluster is kept as it is (KUBECONFIG={kubeconfig}); delete it with `dualstack cluster down --name {cluster}`"
        )?;
        if !logs.trim().is_empty() {
            write!(f, "; last log lines of {step}:\n{}", logs.trim_end())?;
        }
        Ok(())
    }
}
