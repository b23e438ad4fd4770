//! A vendor's CNI in the clusters the harness creates: its images loaded into every node, then a
//! manifest (one for every mode, or one per mode, with `${DUALSTACK_*}` substituted) applied, or an
//! install command run with the same variables in its environment and `kind` and `kubectl` on its
//! PATH. So the install learns everything it needs about the cluster without glue.

mod diagnose;

pub use diagnose::{Diagnosis, diagnose};

use crate::error::{Error, Result};
use crate::kind::{ClusterFiles, ClusterSpec, Kind};
use crate::mode::Mode;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The variables an install gets (in a manifest as `${NAME}`, in a command's environment).
pub const VARIABLES: [&str; 6] =
    ["DUALSTACK_CLUSTER", "DUALSTACK_MODE", "DUALSTACK_POD_SUBNETS", "DUALSTACK_SERVICE_SUBNETS", "DUALSTACK_NODES", "DUALSTACK_KIND"];

/// How the vendor's CNI gets into a cluster created without the default one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CniInstall {
    /// The offline image's default CNI.
    Default,
    /// `kubectl apply -f` of the mode's manifest, variables substituted.
    Manifests(CniManifests),
    /// `sh -c CMD` with KUBECONFIG and the variables set (a helm install, for example).
    Command(String),
}

impl std::fmt::Display for CniInstall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Default => f.write_str("the default CNI"),
            Self::Manifests(manifests) => write!(f, "kubectl apply -f {manifests}"),
            Self::Command(command) => write!(f, "sh -c {command:?}"),
        }
    }
}

impl CniInstall {
    /// What the reports say was installed in `mode`'s cluster: the manifest with its digest, so a
    /// result names the exact file it was tested with.
    pub fn describe(&self, mode: Mode) -> String {
        match self {
            Self::Default => "dualstack-cni (the default, in the node image)".to_string(),
            Self::Manifests(manifests) => match manifests.for_mode(mode) {
                Some(path) => format!("manifest {} ({})", path.display(), file_digest(path)),
                None => format!("no manifest for {mode}"),
            },
            Self::Command(command) => format!("install command {command}"),
        }
    }
}

/// `sha256:HEX` of a file's content, or why it could not be read.
pub fn file_digest(path: &Path) -> String {
    use sha2::Digest;
    match std::fs::read(path) {
        Ok(bytes) => format!("sha256:{}", sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>()),
        Err(e) => format!("unreadable: {e}"),
    }
}

/// `--cni-manifest` values: `FILE` for every mode, `MODE=FILE` for one (which wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniManifests {
    every_mode: Option<PathBuf>,
    per_mode: BTreeMap<Mode, PathBuf>,
}

impl std::fmt::Display for CniManifests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = self.every_mode.iter().map(|p| p.display().to_string()).collect();
        parts.extend(self.per_mode.iter().map(|(mode, p)| format!("{mode}={}", p.display())));
        f.write_str(&parts.join(" "))
    }
}

impl CniManifests {
    /// Parses the values; a mode given twice, or two files for every mode, is bad input.
    pub fn parse(values: &[String]) -> Result<Self> {
        let mut manifests = Self::default();
        for value in values {
            let (mode, file) = match value.split_once('=') {
                Some((mode, file)) if mode.parse::<Mode>().is_ok() => (mode.parse::<Mode>().ok(), PathBuf::from(file)),
                _ => (None, PathBuf::from(value)),
            };
            let taken = match mode {
                Some(mode) => manifests.per_mode.insert(mode, file).is_some(),
                None => manifests.every_mode.replace(file).is_some(),
            };
            if taken {
                let what = mode.map_or("every mode".to_string(), |m| format!("mode {m}"));
                return Err(Error::Usage(format!("--cni-manifest {value}: {what} already has a manifest")));
            }
        }
        Ok(manifests)
    }

    pub fn for_mode(&self, mode: Mode) -> Option<&Path> {
        self.per_mode.get(&mode).or(self.every_mode.as_ref()).map(PathBuf::as_path)
    }

    /// Before any cluster work: every mode of the run has a manifest, and each reads, names only
    /// known variables and, substituted with the mode's values, holds Kubernetes objects.
    pub fn check(&self, modes: &[Mode]) -> Result<()> {
        for &mode in modes {
            let Some(path) = self.for_mode(mode) else {
                return Err(Error::Usage(format!("no --cni-manifest for mode {mode}: give FILE for every mode or {mode}=FILE")));
            };
            let spec = ClusterSpec { default_cni: false, ..ClusterSpec::new(mode) };
            let env = InstallEnv::new(&format!("dualstack-{mode}-000000"), &spec, Path::new("kind"));
            check_manifest(path, &manifest_text(path, &env)?)?;
        }
        Ok(())
    }
}

/// The manifest at `path` with the variables of `env` substituted.
fn manifest_text(path: &Path, env: &InstallEnv) -> Result<String> {
    let bad = |message: String| Error::CniManifest { path: path.to_path_buf(), message };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    substitute(&text, env).map_err(bad)
}

/// Readable YAML documents, each a Kubernetes object with apiVersion and kind.
fn check_manifest(path: &Path, text: &str) -> Result<()> {
    let bad = |message: String| Error::CniManifest { path: path.to_path_buf(), message };
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_str_multiple::<serde_json::Value, Vec<_>>(text).map_err(|e| bad(e.to_string().lines().next().unwrap_or_default().to_string()))?;
    let objects: Vec<&serde_json::Value> = docs.iter().filter(|d| !d.is_null()).collect();
    if objects.is_empty() {
        return Err(bad("holds no Kubernetes object".into()));
    }
    for (i, doc) in objects.iter().enumerate() {
        if doc.get("apiVersion").and_then(|v| v.as_str()).is_none() || doc.get("kind").and_then(|v| v.as_str()).is_none() {
            return Err(bad(format!("document {} has no apiVersion and kind", i + 1)));
        }
    }
    Ok(())
}

/// What an install learns about its cluster: the VARIABLES, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallEnv {
    values: Vec<(&'static str, String)>,
}

impl InstallEnv {
    pub fn new(name: &str, spec: &ClusterSpec, kind: &Path) -> Self {
        let values = [
            name.to_string(),
            spec.mode.name().to_string(),
            spec.pod_subnets().join(","),
            spec.service_subnets().join(","),
            spec.node_names(name).join(","),
            kind.display().to_string(),
        ];
        Self { values: VARIABLES.into_iter().zip(values).collect() }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    pub fn vars(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.values.iter().map(|(n, v)| (*n, v.as_str()))
    }
}

/// `${DUALSTACK_NAME}` replaced by its value. Other `${...}` (shell in a ConfigMap) stay as they
/// are; a `${DUALSTACK_...}` that is not one of the VARIABLES is an error naming line and column.
pub fn substitute(text: &str, env: &InstallEnv) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for (number, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find("${DUALSTACK_") {
            let Some(len) = rest[start..].find('}') else { break };
            let name = &rest[start + 2..start + len];
            let column = line.len() - rest.len() + start + 1;
            let value = env.get(name).ok_or_else(|| format!("line {}, column {column}: unknown variable ${{{name}}} (known: {})", number + 1, VARIABLES.join(", ")))?;
            out.push_str(&rest[..start]);
            out.push_str(value);
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

/// An image the vendor's CNI needs in the nodes (none can be pulled in an offline cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageToLoad {
    /// `--load-image`: an image in this machine's Docker engine.
    Image(String),
    /// `--load-archive`: a `docker save` tarball.
    Archive(PathBuf),
}

impl std::fmt::Display for ImageToLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Image(image) => write!(f, "image {image}"),
            Self::Archive(file) => write!(f, "archive {}", file.display()),
        }
    }
}

impl ImageToLoad {
    /// The image or archive with its digest (the Docker image ID, the archive's sha256).
    pub async fn describe(&self) -> String {
        match self {
            Self::Image(name) => match crate::machine::docker_image_id(name).await {
                Some(id) => format!("{name} ({id})"),
                None => format!("{name} (not in Docker)"),
            },
            Self::Archive(file) => format!("{} ({})", file.display(), file_digest(file)),
        }
    }
}

/// Before any cluster work: each image is in Docker, each archive a readable file.
pub async fn check_images(images: &[ImageToLoad]) -> Result<()> {
    for image in images {
        let missing = match image {
            ImageToLoad::Image(name) => (!crate::machine::docker_has_image(name).await).then(|| "it is not in this machine's Docker engine (docker image inspect failed; build or load it there first)".to_string()),
            ImageToLoad::Archive(file) => std::fs::File::open(file).err().map(|e| format!("it cannot be read: {e}")),
        };
        if let Some(why) = missing {
            return Err(Error::ImageToLoad { image: image.to_string(), message: why });
        }
    }
    Ok(())
}

/// Loads every image into every node of the cluster.
pub async fn load_images(kind: &Kind, files: &ClusterFiles, images: &[ImageToLoad]) -> Result<()> {
    for image in images {
        match image {
            ImageToLoad::Image(name) => kind.load_image(files, name).await?,
            ImageToLoad::Archive(file) => kind.load_archive(files, file).await?,
        }
    }
    Ok(())
}

/// Installs the CNI into the cluster of `files`; a substituted manifest is kept in the cluster's
/// directory (`cni-manifest.yaml`) for the diagnostics.
pub async fn install(cni: &CniInstall, mode: Mode, files: &ClusterFiles, env: &InstallEnv) -> Result<()> {
    let failed = |cause: String| Error::CniInstall { how: cni.to_string(), cause, details: String::new() };
    let mut command = match cni {
        CniInstall::Default => return Ok(()),
        CniInstall::Manifests(manifests) => {
            let path = manifests.for_mode(mode).ok_or_else(|| failed(format!("no manifest for mode {mode}")))?;
            let substituted = files.dir.join("cni-manifest.yaml");
            std::fs::write(&substituted, manifest_text(path, env)?).map_err(|e| failed(format!("writing {}: {e}", substituted.display())))?;
            let mut command = tokio::process::Command::new(crate::machine::kubectl());
            command.arg("apply").arg("-f").arg(&substituted);
            command
        }
        CniInstall::Command(script) => {
            let mut command = tokio::process::Command::new("sh");
            command.args(["-ec", script]);
            command
        }
    };
    // kind and kubectl come first on PATH: the prepared ones, whatever the user's PATH holds.
    let inherited = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(crate::machine::cache_dir().join("bin")).chain(std::env::split_paths(&inherited));
    let path = std::env::join_paths(dirs).map_err(|e| failed(format!("building PATH: {e}")))?;
    command.env("KUBECONFIG", &files.kubeconfig).env("PATH", path).envs(env.vars()).kill_on_drop(true);
    let (status, last_lines) = run_prefixed(command, &format!("[{mode}] cni: ")).await.map_err(|e| failed(e.to_string()))?;
    if status.success() {
        Ok(())
    } else {
        Err(failed(format!("exited with {status}; its last output: {}", last_lines.join(" | "))))
    }
}

/// Runs `command` with its output (stdout and stderr) printed line by line behind `prefix`, so
/// that the installs of modes running at once can be told apart; returns the last lines too.
async fn run_prefixed(mut command: tokio::process::Command, prefix: &str) -> std::io::Result<(std::process::ExitStatus, Vec<String>)> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn()?;
    let last = std::sync::Mutex::new(std::collections::VecDeque::new());
    let print = async |stream: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| {
        let Some(stream) = stream else { return };
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            println!("{prefix}{line}");
            if let Ok(mut last) = last.lock() {
                last.push_back(line);
                if last.len() > 5 {
                    last.pop_front();
                }
            }
        }
    };
    let stdout = child.stdout.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>);
    let stderr = child.stderr.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>);
    tokio::join!(print(stdout), print(stderr));
    let status = child.wait().await?;
    let last = last.into_inner().unwrap_or_default().into_iter().collect();
    Ok((status, last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn env(mode: Mode) -> InstallEnv {
        InstallEnv::new("vendor", &ClusterSpec { default_cni: false, ..ClusterSpec::new(mode) }, Path::new("/cache/bin/kind"))
    }

    #[rstest]
    #[case(Mode::Dual, "10.244.0.0/16,fd00:10:244::/56", "10.96.0.0/16,fd00:10:96::/112")]
    #[case(Mode::DualIpv6Primary, "fd00:10:244::/56,10.244.0.0/16", "fd00:10:96::/112,10.96.0.0/16")]
    #[case(Mode::Ipv6, "fd00:10:244::/56", "fd00:10:96::/112")]
    fn the_install_learns_the_cluster_primary_first(#[case] mode: Mode, #[case] pods: &str, #[case] services: &str) {
        let env = env(mode);
        let vars: Vec<(&str, &str)> = env.vars().collect();
        assert_eq!(
            vars,
            [
                ("DUALSTACK_CLUSTER", "vendor"),
                ("DUALSTACK_MODE", mode.name()),
                ("DUALSTACK_POD_SUBNETS", pods),
                ("DUALSTACK_SERVICE_SUBNETS", services),
                ("DUALSTACK_NODES", "vendor-control-plane,vendor-worker"),
                ("DUALSTACK_KIND", "/cache/bin/kind"),
            ]
        );
    }

    #[test]
    fn variables_are_substituted_and_other_dollars_kept() {
        let text = "net: ${DUALSTACK_POD_SUBNETS}\nmode: \"${DUALSTACK_MODE}\" ${HOME} $DUALSTACK_MODE\n";
        assert_eq!(substitute(text, &env(Mode::Ipv4)).as_deref(), Ok("net: 10.244.0.0/16\nmode: \"ipv4\" ${HOME} $DUALSTACK_MODE\n"));
    }

    #[test]
    fn an_unknown_variable_is_named_with_its_place() {
        let err = substitute("a: 1\nb: x ${DUALSTACK_POD_CIDR}\n", &env(Mode::Dual)).unwrap_err();
        assert!(err.starts_with("line 2, column 6: unknown variable ${DUALSTACK_POD_CIDR} (known: DUALSTACK_CLUSTER,"), "{err}");
    }

    #[test]
    fn manifests_per_mode_win_over_the_one_for_every_mode() {
        let manifests = CniManifests::parse(&["all.yaml".into(), "ipv6=v6.yaml".into()]).unwrap();
        assert_eq!(manifests.for_mode(Mode::Ipv6), Some(Path::new("v6.yaml")));
        assert_eq!(manifests.for_mode(Mode::Dual), Some(Path::new("all.yaml")));
        let only_dual = CniManifests::parse(&["dual=d.yaml".into()]).unwrap();
        assert_eq!(only_dual.for_mode(Mode::Ipv4), None);
        let err = only_dual.check(&[Mode::Ipv4]).unwrap_err().to_string();
        assert_eq!(err, "no --cni-manifest for mode ipv4: give FILE for every mode or ipv4=FILE");
        let twice = CniManifests::parse(&["dual=a.yaml".into(), "dual=b.yaml".into()]).unwrap_err().to_string();
        assert_eq!(twice, "--cni-manifest dual=b.yaml: mode dual already has a manifest");
    }
}
