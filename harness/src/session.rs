//! A whole run: for each mode, the cluster (an existing one, or a KIND cluster created for the run,
//! with the vendor's CNI installed when asked), its detected facts, the suites, then cleanup. Every
//! created cluster is deleted on every path out, an interrupt included (its guard deletes it when
//! the run's future is dropped).

use crate::checks::Target as ClusterTarget;
use crate::cluster::{self, KindCluster};
use crate::cni::{self, CniInstall, ImageToLoad, InstallEnv};
use crate::error::{Error, Result};
use crate::load_balancer::LoadBalancer;
use crate::network_policy::PolicyAgent;
use crate::kind::{ClusterFiles, ClusterSpec, KubeProxyMode};
use crate::mode::Mode;
use crate::plan::{Plan, PlannedCase, Target, node_labels};
use crate::runner::{self, RunOptions, Stopped};
use crate::table::Tables;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::ListParams;
use reports::{Event, Property};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where the clusters come from.
#[derive(Debug, Clone)]
pub enum Clusters {
    Existing { kubeconfig: PathBuf, context: Option<String> },
    Kind { cni: CniInstall, images: Vec<ImageToLoad>, workers: u8, kube_proxy: KubeProxyMode, load_balancer: LoadBalancer, network_policy: PolicyAgent, keep: bool, node_image: Option<String>, ready_timeout: Duration },
}

#[derive(Debug, Clone)]
pub struct Session {
    pub modes: Vec<Mode>,
    pub clusters: Clusters,
    /// Modes run at once.
    pub jobs: usize,
}

/// How a session ended.
pub enum Ended {
    /// Every mode ran; each mode's setup outcome (its cases went to `emit`).
    Finished(Vec<(Mode, std::result::Result<(), Stopped>)>),
    /// `interrupt` resolved first, with this value; every planned case that had not finished was
    /// reported (interrupted, or skipped with the plan's reason).
    Interrupted(u8),
}

impl Session {
    /// The plan's targets: each mode with the node labels of the cluster it will run on (the shape
    /// the harness creates, or the nodes of the given cluster).
    pub async fn targets(&self) -> Result<Vec<Target>> {
        match &self.clusters {
            Clusters::Kind { workers, .. } => Ok(self
                .modes
                .iter()
                .map(|&mode| Target { mode, nodes: ClusterSpec { workers: *workers, ..ClusterSpec::new(mode) }.node_labels(), created: true })
                .collect()),
            Clusters::Existing { kubeconfig, context } => {
                let client = cluster::client_from_kubeconfig(kubeconfig, context.as_deref()).await?;
                let nodes = Api::<Node>::all(client).list(&ListParams::default()).await?.items;
                let roles: Vec<bool> = nodes.iter().map(crate::objects::is_control_plane).collect();
                Ok(self.modes.iter().map(|&mode| Target { mode, nodes: node_labels(&roles), created: false }).collect())
            }
        }
    }

    /// Runs every mode of `plan` (`jobs` at a time) until done or until `interrupt` resolves. Cases
    /// go to `emit`.
    pub async fn run(
        &self,
        tables: &Tables,
        plan: &Plan,
        options: &RunOptions,
        emit: &(dyn Fn(Event) + Sync),
        interrupt: impl std::future::Future<Output = u8>,
    ) -> Ended {
        let finished: Mutex<BTreeSet<(String, String, String)>> = Mutex::default();
        let deletions: Mutex<Vec<tokio::task::JoinHandle<()>>> = Mutex::default();
        for property in self.properties().await {
            emit(Event::Property(property));
        }
        let key = |case: &PlannedCase| (case.suite.clone(), case.id.clone(), case.mode.name().to_string());
        let tracking = |event: Event| {
            if let Event::CaseFinished(case) = &event
                && let Ok(mut finished) = finished.lock()
            {
                finished.insert((case.suite.clone(), case.id.clone(), case.mode.clone()));
            }
            emit(event);
        };
        let modes = futures::stream::iter(self.modes.iter().copied())
            .map(|mode| {
                let tracking = &tracking;
                let deletions = &deletions;
                let finished = &finished;
                async move {
                    let started = Instant::now();
                    let outcome = self.run_mode(mode, tables, plan, options, tracking, deletions).await;
                    if let Err(Stopped { phase, error }) = &outcome {
                        tracking(Event::SetupFailed { mode: mode.name().into(), phase: phase.clone(), message: error.to_string() });
                        if let Some(details) = error.details() {
                            tracking(Event::Diagnostics { mode: mode.name().into(), text: details.to_string() });
                        }
                        // The mode's planned cases that never ran are reported too, with why, so the
                        // reports still hold the whole plan (as an interrupt's do).
                        let done = finished.lock().map(|f| f.clone()).unwrap_or_default();
                        let why = format!("not run: the {mode} cluster's setup failed in {phase}");
                        for case in plan.of_mode(mode).filter(|case| !done.contains(&key(case))) {
                            tracking(Event::CaseFinished(if case.runs() { case.not_run(&why) } else { case.result() }));
                        }
                    }
                    tracking(Event::ModeFinished { mode: mode.name().into(), duration: started.elapsed() });
                    (mode, outcome)
                }
            })
            .buffer_unordered(self.jobs.max(1))
            .collect::<Vec<_>>();
        let ended = tokio::select! {
            outcomes = modes => Ended::Finished(outcomes),
            code = interrupt => {
                // The modes' futures are dropped here: their cluster guards delete the clusters.
                let finished = finished.lock().map(|f| f.clone()).unwrap_or_default();
                for case in &plan.cases {
                    if !finished.contains(&key(case)) {
                        emit(Event::CaseFinished(if case.runs() { case.interrupted() } else { case.result() }));
                    }
                }
                Ended::Interrupted(code)
            }
        };
        let deletions = deletions.into_inner().unwrap_or_default();
        futures::future::join_all(deletions).await;
        ended
    }

    /// What the reports say was tested, as far as known before any cluster exists.
    async fn properties(&self) -> Vec<Property> {
        let mut properties = vec![property(None, "dualstack", env!("CARGO_PKG_VERSION"))];
        match &self.clusters {
            Clusters::Existing { kubeconfig, context } => {
                let context = context.as_deref().unwrap_or("its current context");
                properties.push(property(None, "cluster", &format!("existing, kubeconfig {} ({context})", kubeconfig.display())));
            }
            Clusters::Kind { cni, images, .. } => {
                if matches!(cni, CniInstall::Manifests(_)) {
                    properties.extend(self.modes.iter().map(|&mode| property(Some(mode), "cni", &cni.describe(mode))));
                } else if let Some(&mode) = self.modes.first() {
                    properties.push(property(None, "cni", &cni.describe(mode)));
                }
                let mut loaded = Vec::new();
                for image in images {
                    loaded.push(image.describe().await);
                }
                if !loaded.is_empty() {
                    properties.push(property(None, "images loaded", &loaded.join(", ")));
                }
            }
        }
        properties
    }

    /// One mode: its cluster, the suites, then the cluster's deletion, handed to `deletions` so that
    /// the next mode's cluster is created meanwhile.
    async fn run_mode(
        &self,
        mode: Mode,
        tables: &Tables,
        plan: &Plan,
        options: &RunOptions,
        emit: &(dyn Fn(Event) + Sync),
        deletions: &Mutex<Vec<tokio::task::JoinHandle<()>>>,
    ) -> std::result::Result<(), Stopped> {
        let cases: Vec<&PlannedCase> = plan.of_mode(mode).collect();
        let (cni, images, workers, kube_proxy, load_balancer, network_policy, keep, node_image, ready_timeout) = match &self.clusters {
            Clusters::Existing { kubeconfig, context } => {
                let client = cluster::client_from_kubeconfig(kubeconfig, context.as_deref()).await.map_err(Stopped::in_phase("connect"))?;
                return run_on(&client, mode, tables, &cases, options, None, emit).await;
            }
            Clusters::Kind { cni, images, workers, kube_proxy, load_balancer, network_policy, keep, node_image, ready_timeout } => {
                (cni, images, *workers, *kube_proxy, *load_balancer, *network_policy, *keep, node_image.clone(), *ready_timeout)
            }
        };
        let name = crate::kind::unique_cluster_name(mode);
        let files = ClusterFiles::new(&name).map_err(Stopped::in_phase("create"))?;
        let spec = ClusterSpec { workers, default_cni: *cni == CniInstall::Default, kube_proxy, ..ClusterSpec::new(mode) };
        println!("[{mode}] creating cluster {name} ({} nodes)", spec.node_count());
        // Whatever happens next (failure, or an interrupt dropping this future), the cluster goes away.
        let mut guard = ClusterGuard { files: files.clone(), keep };
        let (cluster, timings) = KindCluster::up(&name, spec.clone(), node_image, ready_timeout).await.map_err(Stopped::in_phase("create"))?;
        println!(
            "[{mode}] phase create: {:.1}s (kind {:.1}s, nodes Ready {:.1}s), cluster {name}, node image {}",
            (timings.create + timings.ready).as_secs_f64(),
            timings.create.as_secs_f64(),
            timings.ready.as_secs_f64(),
            cluster.node_image
        );
        let node_image = match crate::machine::docker_image_id(&cluster.node_image).await {
            Some(id) => format!("{} ({id})", cluster.node_image),
            None => cluster.node_image.clone(),
        };
        emit(Event::Property(property(Some(mode), "cluster", &format!("{name} (KIND, {} nodes)", spec.node_count()))));
        emit(Event::Property(property(Some(mode), "node image", &node_image)));
        let kind = crate::kind::Kind::locate().map_err(Stopped::in_phase("load"))?;
        if !images.is_empty() {
            let started = Instant::now();
            cni::load_images(&kind, &files, images).await.map_err(Stopped::in_phase("load"))?;
            println!("[{mode}] phase load: {:.1}s ({})", started.elapsed().as_secs_f64(), images.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "));
        }
        if *cni != CniInstall::Default {
            let started = Instant::now();
            let installed = match cni::install(cni, mode, &files, &InstallEnv::new(&name, &spec, kind.binary())).await {
                Ok(()) => cluster::wait_nodes_ready(&cluster.client, spec.node_count(), ready_timeout).await,
                Err(e) => Err(e),
            };
            if let Err(e) = installed {
                return Err(Stopped { phase: "cni".into(), error: cni_failure(e, cni, &cluster, &kind, keep).await });
            }
            println!("[{mode}] phase cni: {:.1}s (installed, nodes Ready)", started.elapsed().as_secs_f64());
        }
        // The load balancer and the policy agent are independent of each other: installed at once.
        let balancer = async {
            match load_balancer {
                LoadBalancer::Metallb => {
                    let started = Instant::now();
                    let installed = crate::load_balancer::install(&cluster.client, &files, mode, ready_timeout).await?;
                    println!("[{mode}] phase load-balancer: {:.1}s ({installed}, controller and speakers Ready)", started.elapsed().as_secs_f64());
                    Ok::<_, Error>(installed.to_string())
                }
                LoadBalancer::None => Ok("none".to_string()),
            }
        };
        let agent = async {
            match network_policy {
                PolicyAgent::KubeNetworkPolicies => {
                    let started = Instant::now();
                    let installed = crate::network_policy::install(&cluster.client, &files, ready_timeout).await?;
                    println!("[{mode}] phase network-policy: {:.1}s ({installed}, Ready on every node)", started.elapsed().as_secs_f64());
                    Ok::<_, Error>(installed)
                }
                PolicyAgent::None => Ok("none".to_string()),
            }
        };
        let (balancer, agent) = tokio::join!(balancer, agent);
        emit(Event::Property(property(Some(mode), "load balancer", &balancer.map_err(Stopped::in_phase("load-balancer"))?)));
        emit(Event::Property(property(Some(mode), "network policy agent", &agent.map_err(Stopped::in_phase("network-policy"))?)));
        // Count this mode's failures; after any, kind's logs are exported where they outlive the cluster.
        let failures = std::sync::atomic::AtomicUsize::new(0);
        let counting = |event: Event| {
            if let Event::CaseFinished(case) = &event
                && matches!(case.status, reports::Status::Failed | reports::Status::Error)
            {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            emit(event);
        };
        let convertible = crate::convert::Convertible { files: &files, load_balancer: load_balancer == LoadBalancer::Metallb };
        let outcome = run_on(&cluster.client, mode, tables, &cases, options, Some(convertible), &counting).await;
        // A conversion that failed midway leaves the cluster as it is, for a look (its error says so).
        let keep = keep || matches!(outcome, Err(Stopped { error: Error::Conversion(_), .. }));
        guard.keep = keep;
        if failures.load(std::sync::atomic::Ordering::Relaxed) > 0 || outcome.is_err() {
            let dir = crate::machine::logs_dir().join(&name);
            if let Ok(kind) = crate::kind::Kind::locate() {
                kind.export_logs(&files, &dir).await;
                emit(Event::Diagnostics { mode: mode.name().into(), text: format!("KIND logs of cluster {name} exported to {}", dir.display()) });
            }
        }
        if keep {
            println!("[{mode}] kept cluster {name}; kubeconfig {}", files.kubeconfig.display());
        }
        if !keep {
            let deletion = tokio::spawn(async move {
                let deleting = Instant::now();
                guard.finish().await;
                println!("[{mode}] phase delete: {:.1}s", deleting.elapsed().as_secs_f64());
            });
            if let Ok(mut deletions) = deletions.lock() {
                deletions.push(deletion);
            }
        }
        outcome
    }
}

/// A failed CNI phase as the CNI's error: what failed, why the nodes are not Ready (the pods that
/// are not, the images the nodes lack), where KIND's logs went, and how to keep the cluster.
async fn cni_failure(error: Error, cni: &CniInstall, cluster: &KindCluster, kind: &crate::kind::Kind, keep: bool) -> Error {
    let cause = match error {
        Error::CniInstall { cause, .. } => cause,
        other => other.to_string(),
    };
    let diagnosis = cni::diagnose(&cluster.client).await;
    let logs = crate::machine::logs_dir().join(&cluster.files.name);
    kind.export_logs(&cluster.files, &logs).await;
    let kept = if keep {
        format!("cluster kept: KUBECONFIG={}", cluster.files.kubeconfig.display())
    } else {
        "run again with --keep to keep the cluster for a look".to_string()
    };
    Error::CniInstall {
        how: cni.to_string(),
        cause: format!("{cause}; {}; KIND logs exported to {}; {kept}", diagnosis.summary, logs.display()),
        details: diagnosis.details,
    }
}

/// Deletes a created cluster on every path out of `run_mode`.
struct ClusterGuard {
    files: ClusterFiles,
    keep: bool,
}

impl ClusterGuard {
    async fn finish(self) {
        if !self.keep
            && let Err(e) = cluster::destroy(&self.files).await
        {
            eprintln!("warning: deleting cluster {}: {e}", self.files.name);
        }
        std::mem::forget(self);
    }
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        // Dropped without finish(): an error or an interrupt; no runtime to await on, so block.
        let kind = crate::kind::Kind::locate().map(|k| k.binary().to_path_buf()).unwrap_or_else(|_| "kind".into());
        eprintln!("deleting cluster {}", self.files.name);
        let _ = std::process::Command::new(kind).args(["delete", "cluster", "--name", &self.files.name]).output();
        let _ = std::process::Command::new("docker").args(["network", "rm", &self.files.network]).output();
        let _ = self.files.remove_dir();
    }
}

async fn run_on(
    client: &kube::Client,
    mode: Mode,
    tables: &Tables,
    cases: &[&PlannedCase],
    options: &RunOptions,
    convertible: Option<crate::convert::Convertible<'_>>,
    emit: &(dyn Fn(Event) + Sync),
) -> std::result::Result<(), Stopped> {
    let facts = crate::detect::detect(client).await.map_err(Stopped::in_phase("detect"))?;
    if facts.mode != mode {
        return Err(Stopped::in_phase("detect")(Error::ModeMismatch {
            requested: mode.to_string(),
            detected: facts.mode.to_string(),
            ranges: facts.service_cidrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        }));
    }
    println!("[{mode}] cluster detected: {} service ranges {:?}, Kubernetes {}", facts.mode, facts.service_cidrs, facts.server_version);
    emit(Event::Property(property(Some(mode), "kubernetes", &facts.server_version)));
    emit(Event::Property(property(Some(mode), "kube-proxy", &crate::detect::kube_proxy_mode(client).await)));
    let collected = crate::probe_pod::collect_expired_namespaces(client).await.map_err(Stopped::in_phase("collect"))?;
    if !collected.is_empty() {
        println!("[{mode}] collected {} namespaces left by crashed runs: {}", collected.len(), collected.join(", "));
    }
    runner::run_mode(&ClusterTarget { client, facts: &facts, tables, convertible }, cases, options, emit).await
}

fn property(mode: Option<Mode>, name: &str, value: &str) -> Property {
    Property { mode: mode.map(|m| m.name().to_string()), name: name.to_string(), value: value.to_string() }
}
