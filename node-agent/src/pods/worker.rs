//! One pod's worker: a level-triggered loop that reads what the runtime has
//! for its pod from the node's pod cache ([`super::pleg`]), decides what to do
//! ([`super::actions::compute_pod_actions`]), does it (sandbox, init
//! containers in order, containers, restarts with back-off, probes, kills),
//! then writes the pod's status from the cache. On deletion it stops the pod
//! gracefully and removes the pod object.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use client::events::EventType;
use client::k8s_openapi::api::core::v1::{Container, Pod, PodStatus as ApiPodStatus, Secret};
use client::kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use client::kube::Api;
use tokio::sync::Notify;

use super::actions::{compute_pod_actions, PodStatus, StartContainer};
use super::backoff::Backoff;
use super::command::{effective_argv, expand_command, ImageProcess};
use super::events::PodEvents;
use super::probe::{self, Kind, SharedResults, Target};
use super::spec::{self, ContainerInputs, ImageUser};
use super::status::{self, Observed, PodFacts, RunState, Waiting};
use super::{dns, env, hooks, pull_secrets, sources, volumes, Context};
use crate::cri::api as cri;

/// How often a pod is synced without any change; changes in the runtime
/// (through the pod cache), probe results, back-off ends and pod changes wake
/// the worker sooner.
const RESYNC: Duration = Duration::from_secs(60);
/// How often the same back-off event is repeated.
const BACKOFF_EVENT_EVERY: Duration = Duration::from_secs(30);
/// How soon a sync that failed is tried again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("CRI: {0}")]
    Cri(#[from] tonic::Status),
    #[error("API: {0}")]
    Api(#[from] client::kube::Error),
}

/// The probes of one running container.
struct Probes {
    results: SharedResults,
    _tasks: client::AbortOnDrop,
}

/// What the worker of one pod remembers between syncs; everything else is read
/// from CRI each time, so a restarted agent picks up where it was.
pub struct PodWorker {
    ctx: Arc<Context>,
    key: String,
    uid: String,
    wake: Arc<Notify>,
    crash_backoff: HashMap<String, Backoff>,
    pull_backoff: HashMap<String, Backoff>,
    /// Why a container is not running, for its status.
    waiting: HashMap<String, Waiting>,
    probes: HashMap<String, Probes>,
    /// When a back-off event was last emitted, per container.
    backoff_events: HashMap<String, Instant>,
    last_status: Option<ApiPodStatus>,
    sandbox_config: Option<cri::PodSandboxConfig>,
}

impl PodWorker {
    pub fn new(ctx: Arc<Context>, key: String, uid: String, wake: Arc<Notify>) -> Self {
        Self {
            ctx,
            key,
            uid,
            wake,
            crash_backoff: HashMap::new(),
            pull_backoff: HashMap::new(),
            waiting: HashMap::new(),
            probes: HashMap::new(),
            backoff_events: HashMap::new(),
            last_status: None,
            sandbox_config: None,
        }
    }

    /// Runs until the pod is gone from the node.
    pub async fn run(mut self) {
        // Until the cache is filled a pod would look as if it had no sandbox.
        self.ctx.cache.wait_synced().await;
        loop {
            let pod = self.ctx.pods.get_by_key(&self.key).filter(|pod| pod.metadata.uid.as_deref() == Some(self.uid.as_str()));
            let outcome = match &pod {
                Some(pod) if pod.metadata.deletion_timestamp.is_none() => self.sync(pod).await.map(|()| false),
                Some(pod) => self.terminate(Some(pod)).await.map(|()| true),
                None => self.terminate(None).await.map(|()| true),
            };
            let wait = match outcome {
                Ok(true) => return,
                Ok(false) => RESYNC,
                Err(error) => {
                    tracing::warn!(pod = %self.key, %error, "pod sync failed; retrying");
                    RETRY_AFTER_FAILURE
                }
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Reads the pod from the runtime again, after acting on it.
    async fn refresh(&self) -> Result<PodStatus, SyncError> {
        self.ctx.cache.refresh_pod(&self.ctx.cri, &self.uid).await?;
        Ok(self.ctx.cache.get(&self.uid))
    }

    /// The running containers whose liveness or startup probe failed.
    fn unhealthy(&self) -> HashMap<String, Kind> {
        self.probes.iter().filter_map(|(id, probes)| probe::lock(&probes.results).failed.map(|kind| (id.clone(), kind))).collect()
    }

    async fn sync(&mut self, pod: &Pod) -> Result<(), SyncError> {
        let events = PodEvents::new(self.ctx.recorder.clone(), pod);
        let status = self.ctx.cache.get(&self.uid);
        let actions = compute_pod_actions(pod, &status, &self.unhealthy());
        if actions.is_empty() {
            return self.observe(pod, &status, &events).await;
        }
        let runtime = self.ctx.cri.runtime.clone();
        for id in &actions.remove {
            let _ = runtime.remove_container(id).await;
        }
        if actions.kill_pod {
            // A finished pod runs nothing more; its sandbox goes.
            self.stop_all(pod, &status, &events, 0).await;
            if let Some(sandbox) = status.ready_sandbox() {
                runtime.stop_pod_sandbox(&sandbox.id).await?;
            }
            self.refresh().await?;
            return Ok(());
        }
        for stale in &actions.remove_sandboxes {
            self.remove_sandbox(stale).await?;
        }
        let sandbox_id = match (actions.create_sandbox, status.ready_sandbox()) {
            (Some(attempt), _) => match self.start_sandbox(pod, &events, attempt).await? {
                Some(id) => id,
                None => return self.write_status(pod, &PodStatus::default()).await,
            },
            (None, Some(ready)) => ready.id.clone(),
            (None, None) => return Ok(()),
        };
        for id in &actions.start_created {
            runtime.start_container(id).await?;
        }
        for kill in &actions.kill {
            let probe_name = if kill.reason == Kind::Startup { "startup" } else { "liveness" };
            events.container(&kill.name, EventType::Normal, "Killing", format!("Container {} failed {probe_name} probe, will be restarted", kill.name));
            self.probes.remove(&kill.id);
            let grace = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
            if let Err(status) = runtime.stop_container(&kill.id, grace).await {
                tracing::warn!(pod = %self.key, container = %kill.name, %status, "could not stop an unhealthy container");
            }
        }
        let spec = pod.spec.clone().unwrap_or_default();
        for start in &actions.start {
            let Some(container) = spec.init_containers.iter().flatten().chain(&spec.containers).find(|c| c.name == start.name) else { continue };
            match start.after_exit {
                Some(finished_at) => self.restart(pod, container, start, finished_at, &sandbox_id, &events).await?,
                None => self.start(pod, container, start.restart_count, &sandbox_id, &events).await?,
            }
        }
        let status = self.refresh().await?;
        self.observe(pod, &status, &events).await
    }

    /// Starts the probes of running containers (once each), drops those of
    /// containers that are gone, and writes the pod's status.
    async fn observe(&mut self, pod: &Pod, status: &PodStatus, events: &PodEvents) -> Result<(), SyncError> {
        let spec = pod.spec.clone().unwrap_or_default();
        let pod_ip = status.ready_sandbox().and_then(|s| s.ips.first().cloned()).unwrap_or_default();
        for (name, instance) in status.running() {
            if let Some(container) = spec.containers.iter().find(|c| c.name == name) {
                self.waiting.remove(name);
                self.ensure_probes(container, &instance.id, &pod_ip, events);
            }
        }
        let live: HashSet<&str> = status.running().map(|(_, instance)| instance.id.as_str()).collect();
        self.probes.retain(|id, _| live.contains(id.as_str()));
        self.write_status(pod, status).await
    }

    /// Volumes, then RunPodSandbox. `None` when the pod cannot start yet (the
    /// reason is in an event and in the containers' waiting state).
    async fn start_sandbox(&mut self, pod: &Pod, events: &PodEvents, attempt: u32) -> Result<Option<String>, SyncError> {
        let sources = sources::fetch(&self.ctx.client, pod, self.ctx.allocatable()).await?;
        if let Err(error) = volumes::set_up(&self.ctx.root_dir, pod, &sources) {
            events.pod(EventType::Warning, "FailedMount", format!("MountVolume.SetUp failed: {error}"));
            self.wait_all(pod, Waiting::new("ContainerCreating", ""));
            return Ok(None);
        }
        let mut config = spec::sandbox_config(pod, &self.ctx.log_dir, attempt);
        // The node's resolv.conf is read per pod, as the kubelet does, so edits reach new pods.
        let resolv_conf = std::fs::read_to_string(&self.ctx.dns.resolv_conf).unwrap_or_default();
        let pod_dns = dns::pod_dns(pod, &self.ctx.dns, &resolv_conf);
        if let Some(warning) = pod_dns.missing_cluster_dns {
            events.pod(EventType::Warning, "MissingClusterDNS", warning);
        }
        config.dns_config = Some(pod_dns.config);
        match self.ctx.cri.runtime.run_pod_sandbox(config.clone(), "").await {
            Ok(reply) => {
                self.sandbox_config = Some(config);
                Ok(Some(reply))
            }
            Err(status) => {
                events.pod(EventType::Warning, "FailedCreatePodSandBox", format!("Failed to create pod sandbox: {}", status.message()));
                self.wait_all(pod, Waiting::new("ContainerCreating", ""));
                Ok(None)
            }
        }
    }

    fn wait_all(&mut self, pod: &Pod, waiting: Waiting) {
        for container in pod.spec.iter().flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers)) {
            self.waiting.insert(container.name.clone(), waiting.clone());
        }
    }

    /// Starts a running container's probes, once.
    fn ensure_probes(&mut self, container: &Container, id: &str, pod_ip: &str, events: &PodEvents) {
        if self.probes.contains_key(id) {
            return;
        }
        let results = SharedResults::default();
        let target = Target { cri: self.ctx.cri.clone(), container_id: id.to_string(), container: container.clone(), pod_ip: pod_ip.to_string() };
        let (events, name) = (events.clone(), container.name.clone());
        let on_failure: probe::OnFailure = Arc::new(move |kind: Kind, message: String| {
            events.container(&name, EventType::Warning, "Unhealthy", format!("{} probe failed: {message}", kind.title()));
        });
        let tasks = probe::start(target, results.clone(), self.wake.clone(), on_failure);
        self.probes.insert(id.to_string(), Probes { results, _tasks: client::AbortOnDrop(tasks) });
    }

    /// An exited container that its restart policy restarts: now, or after its back-off.
    async fn restart(&mut self, pod: &Pod, container: &Container, start: &StartContainer, finished_at: i64, sandbox_id: &str, events: &PodEvents) -> Result<(), SyncError> {
        let now = SystemTime::now();
        let finished = SystemTime::UNIX_EPOCH + Duration::from_nanos(finished_at.max(0) as u64);
        let backoff = self.crash_backoff.entry(container.name.clone()).or_default();
        if let Some(remaining) = backoff.remaining_since(finished, now) {
            let full_name = spec::pod_full_name(pod);
            let message = format!("back-off {}s restarting failed container={} pod={full_name}", backoff.delay().as_secs(), container.name);
            self.waiting.insert(container.name.clone(), Waiting::new("CrashLoopBackOff", message));
            if self.backoff_event_due(container.name.clone()) {
                events.container(&container.name, EventType::Warning, "BackOff", format!("Back-off restarting failed container {} in pod {full_name}", container.name));
            }
            let wake = self.wake.clone();
            tokio::spawn(async move {
                tokio::time::sleep(remaining).await;
                wake.notify_one();
            });
            return Ok(());
        }
        backoff.next(now);
        self.backoff_events.remove(&container.name);
        self.start(pod, container, start.restart_count, sandbox_id, events).await
    }

    /// Pull, config, CreateContainer, StartContainer, postStart. Failures that
    /// belong to the pod (image, config) become the container's waiting reason.
    async fn start(&mut self, pod: &Pod, container: &Container, restart_count: i32, sandbox_id: &str, events: &PodEvents) -> Result<(), SyncError> {
        let name = container.name.clone();
        let Some(image_ref) = self.ensure_image(pod, container, events).await? else { return Ok(()) };
        let sources = sources::fetch(&self.ctx.client, pod, self.ctx.allocatable()).await?;
        let env = match env::container_env(pod, container, &sources) {
            Ok(env) => env,
            Err(error) => {
                self.config_error(events, &name, error.to_string());
                return Ok(());
            }
        };
        let volume_paths = match volumes::set_up(&self.ctx.root_dir, pod, &sources) {
            Ok(paths) => paths,
            Err(error) => {
                events.pod(EventType::Warning, "FailedMount", format!("MountVolume.SetUp failed: {error}"));
                self.waiting.insert(name, Waiting::new("ContainerCreating", ""));
                return Ok(());
            }
        };
        let mounts = match volumes::mounts(container, &volume_paths) {
            Ok(mounts) => mounts,
            Err(error) => {
                self.config_error(events, &name, error.to_string());
                return Ok(());
            }
        };
        let (user, process) = self.image_facts(&image_ref).await?;
        let env_map: HashMap<String, String> = env.iter().cloned().collect();
        let (command, args) = expand_command(container.command.as_deref().unwrap_or_default(), container.args.as_deref().unwrap_or_default(), &env_map);
        // With the image's config known the agent combines the argv itself; else
        // the runtime does (CRI's rule is the same).
        let (command, args) = match process {
            Some(process) => (effective_argv(&command, &args, &process), Vec::new()),
            None => (command, args),
        };
        let inputs = ContainerInputs { command, args, env, mounts, restart_count, image_ref };
        let config = match spec::container_config(pod, container, inputs, &user) {
            Ok(config) => config,
            Err(error) => {
                self.config_error(events, &name, error.to_string());
                return Ok(());
            }
        };
        let sandbox_config = self.sandbox_config.clone().unwrap_or_else(|| spec::sandbox_config(pod, &self.ctx.log_dir, 0));
        let runtime = &self.ctx.cri.runtime;
        let id = match runtime.create_container(sandbox_id, config, Some(sandbox_config)).await {
            Ok(id) => id,
            Err(status) => {
                events.container(&name, EventType::Warning, "Failed", format!("Error: {}", status.message()));
                self.waiting.insert(name, Waiting::new("CreateContainerError", status.message()));
                return Ok(());
            }
        };
        events.container(&name, EventType::Normal, "Created", format!("Created container: {name}"));
        if let Err(status) = runtime.start_container(&id).await {
            events.container(&name, EventType::Warning, "Failed", format!("Error: failed to start container {name:?}: {}", status.message()));
            self.waiting.insert(name, Waiting::new("RunContainerError", status.message()));
            return Ok(());
        }
        self.waiting.remove(&name);
        events.container(&name, EventType::Normal, "Started", format!("Started container {name}"));
        if let Some(hook) = container.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let pod_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
            let target = Target { cri: self.ctx.cri.clone(), container_id: id.clone(), container: container.clone(), pod_ip };
            if let Err(message) = hooks::run(hook, &target, Duration::from_secs(30)).await {
                events.container(&name, EventType::Warning, "FailedPostStartHook", format!("PostStartHook failed: {message}"));
                events.container(&name, EventType::Normal, "Killing", format!("FailedPostStartHook: stopping container {name}"));
                runtime.stop_container(&id, 0).await?;
            }
        }
        Ok(())
    }

    /// A container whose config cannot be made waits with
    /// `CreateContainerConfigError` (and the event says why).
    fn config_error(&mut self, events: &PodEvents, name: &str, message: String) {
        events.container(name, EventType::Warning, "Failed", format!("Error: {message}"));
        self.waiting.insert(name.to_string(), Waiting::new("CreateContainerConfigError", message));
    }

    /// Whether a back-off event about `key` is due (they repeat every 30 s, not
    /// on every sync).
    fn backoff_event_due(&mut self, key: String) -> bool {
        let due = self.backoff_events.get(&key).is_none_or(|at| at.elapsed() >= BACKOFF_EVENT_EVERY);
        if due {
            self.backoff_events.insert(key, Instant::now());
        }
        due
    }

    /// The image per `imagePullPolicy`; `None` while the container must wait
    /// (pull failed, in back-off, or absent under `Never`).
    async fn ensure_image(&mut self, pod: &Pod, container: &Container, events: &PodEvents) -> Result<Option<String>, SyncError> {
        let name = container.name.clone();
        let image = container.image.clone().unwrap_or_default();
        let now = SystemTime::now();
        if self.pull_backoff.get(&name).and_then(|b| b.remaining(now)).is_some() {
            let message = format!("Back-off pulling image {image:?}");
            if self.backoff_event_due(format!("pull:{name}")) {
                events.container(&name, EventType::Normal, "BackOff", message.clone());
            }
            self.waiting.insert(name, Waiting::new("ImagePullBackOff", message));
            return Ok(None);
        }
        let spec = cri::ImageSpec { image: image.clone(), ..Default::default() };
        let images = &self.ctx.cri.images;
        let present = images.image_status(spec.clone(), false).await?.image;
        let policy = container.image_pull_policy.clone().unwrap_or_else(|| api::defaults::pull_policy_for(Some(&image)));
        match (policy.as_str(), present) {
            ("Never", None) => {
                let message = format!("Container image {image:?} is not present with pull policy of Never");
                events.container(&name, EventType::Warning, "ErrImageNeverPull", message.clone());
                self.waiting.insert(name, Waiting::new("ErrImageNeverPull", message));
                Ok(None)
            }
            ("Never" | "IfNotPresent", Some(found)) => {
                events.container(&name, EventType::Normal, "Pulled", format!("Container image {image:?} already present on machine"));
                Ok(Some(found.id))
            }
            _ => {
                events.container(&name, EventType::Normal, "Pulling", format!("Pulling image {image:?}"));
                let started = Instant::now();
                let auth = self.pull_auth(pod, &image, events).await?;
                match images.pull_image(spec, auth, self.sandbox_config.clone()).await {
                    Ok(reply) => {
                        let took = started.elapsed().as_secs_f64();
                        events.container(&name, EventType::Normal, "Pulled", format!("Successfully pulled image {image:?} in {took:.3}s ({took:.3}s including waiting)"));
                        self.pull_backoff.remove(&name);
                        Ok(Some(reply))
                    }
                    Err(status) => {
                        events.container(&name, EventType::Warning, "Failed", format!("Failed to pull image {image:?}: {}", status.message()));
                        events.container(&name, EventType::Warning, "Failed", "Error: ErrImagePull".into());
                        self.pull_backoff.entry(name.clone()).or_default().next(now);
                        self.waiting.insert(name, Waiting::new("ErrImagePull", format!("failed to pull image {image:?}: {}", status.message())));
                        Ok(None)
                    }
                }
            }
        }
    }

    /// The credentials for `image` in the pod's imagePullSecrets (read when
    /// pulling, so a Secret made after the pod still counts).
    async fn pull_auth(&self, pod: &Pod, image: &str, events: &PodEvents) -> Result<Option<cri::AuthConfig>, SyncError> {
        let names: Vec<String> = pod.spec.iter().flat_map(|s| s.image_pull_secrets.iter().flatten()).map(|r| r.name.clone()).collect();
        let secrets: Api<Secret> = Api::namespaced(self.ctx.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for name in names {
            match secrets.get_opt(&name).await? {
                Some(secret) => found.push(secret),
                None => missing.push(name),
            }
        }
        if !missing.is_empty() {
            let message = format!("Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.", missing.join(", "));
            events.pod(EventType::Warning, "FailedToRetrieveImagePullSecret", message);
        }
        Ok(pull_secrets::auth_for(image, &found))
    }

    /// The image's user (for runAsNonRoot) and, when the runtime tells,
    /// its Entrypoint and Cmd.
    async fn image_facts(&self, image_ref: &str) -> Result<(ImageUser, Option<ImageProcess>), SyncError> {
        let reply = self.ctx.cri.images.image_status(cri::ImageSpec { image: image_ref.to_string(), ..Default::default() }, true).await?;
        let user = reply.image.as_ref().map(|i| ImageUser { uid: i.uid.as_ref().map(|u| u.value), username: i.username.clone() }).unwrap_or_default();
        Ok((user, reply.info.get("info").and_then(|info| image_process(info))))
    }

    async fn write_status(&mut self, pod: &Pod, runtime_status: &PodStatus) -> Result<(), SyncError> {
        let spec = pod.spec.clone().unwrap_or_default();
        let pod_ips = runtime_status.ready_sandbox().map(|s| s.ips.clone());
        let observe = |this: &Self, container: &Container| {
            let list = runtime_status.containers.get(&container.name);
            let current = list.and_then(|l| l.first()).cloned();
            let results = current.as_ref().and_then(|c| this.probes.get(&c.id)).map(|p| probe::lock(&p.results).clone());
            let results = results.unwrap_or(probe::Results { ready: container.readiness_probe.is_none(), started: container.startup_probe.is_none(), failed: None });
            let observed = Observed {
                previous: list.and_then(|l| l.get(1)).cloned(),
                current,
                waiting: this.waiting.get(&container.name).cloned(),
                ready: results.ready,
                started: results.started,
            };
            status::container_status(&container.name, container.image.as_deref().unwrap_or_default(), &observed)
        };
        let init = spec.init_containers.iter().flatten().map(|c| observe(self, c)).collect();
        let containers = spec.containers.iter().map(|c| observe(self, c)).collect();
        let facts = PodFacts {
            init,
            containers,
            sandbox_ready: pod_ips.is_some(),
            pod_ips: pod_ips.unwrap_or_default(),
            host_ip: &self.ctx.node.ip,
            qos_class: api::strategy::qos_class(pod),
            message: None,
        };
        let status = status::pod_status(pod, facts, &status::now());
        // Written already, unless someone else changed readiness since (the
        // node lifecycle controller marks the pods of a node it stopped
        // hearing from not Ready): then this agent's word must be written again.
        if self.last_status.as_ref() == Some(&status) && ready_condition(pod.status.as_ref()) == ready_condition(Some(&status)) {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
        let patch = serde_json::json!({ "status": status });
        api.patch_status(pod.metadata.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        self.last_status = Some(status);
        Ok(())
    }

    /// Stops every running container of the pod within `grace_seconds`, each
    /// after its preStop hook.
    async fn stop_all(&mut self, pod: &Pod, runtime_status: &PodStatus, events: &PodEvents, grace_seconds: i64) {
        let deadline = Instant::now() + Duration::from_secs(grace_seconds.max(0) as u64);
        let spec = pod.spec.clone().unwrap_or_default();
        let pod_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
        let stops = runtime_status.containers.iter().filter_map(|(name, list)| {
            let running = list.first().filter(|i| i.state == RunState::Running)?.clone();
            let container = spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| &c.name == name).cloned();
            let (cri, events, name, pod_ip) = (self.ctx.cri.clone(), events.clone(), name.clone(), pod_ip.clone());
            Some(async move {
                events.container(&name, EventType::Normal, "Killing", format!("Stopping container {name}"));
                if let Some(container) = container {
                    if let Some(hook) = container.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
                        let target = Target { cri: cri.clone(), container_id: running.id.clone(), container: container.clone(), pod_ip };
                        let limit = deadline.saturating_duration_since(Instant::now());
                        if let Err(message) = hooks::run(hook, &target, limit).await {
                            events.container(&name, EventType::Warning, "FailedPreStopHook", format!("PreStopHook failed: {message}"));
                        }
                    }
                }
                let timeout = deadline.saturating_duration_since(Instant::now()).as_secs() as i64;
                if let Err(status) = cri.runtime.stop_container(&running.id, timeout).await {
                    tracing::warn!(container = %name, %status, "could not stop a container");
                }
            })
        });
        futures::future::join_all(stops).await;
        self.probes.clear();
    }

    async fn remove_sandbox(&self, id: &str) -> Result<(), SyncError> {
        let runtime = &self.ctx.cri.runtime;
        runtime.stop_pod_sandbox(id).await?;
        runtime.remove_pod_sandbox(id).await?;
        Ok(())
    }

    /// Graceful deletion: preStop, stop within the grace period, remove the
    /// sandbox and volumes, then delete the pod object for good (as the kubelet
    /// does, with grace period 0). `None`: the pod is already gone from the API.
    async fn terminate(&mut self, pod: Option<&Pod>) -> Result<(), SyncError> {
        let status = self.refresh().await?;
        if let Some(pod) = pod {
            let grace = pod
                .metadata
                .deletion_grace_period_seconds
                .or(pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
                .unwrap_or(30);
            let events = PodEvents::new(self.ctx.recorder.clone(), pod);
            if status.ready_sandbox().is_some() {
                self.stop_all(pod, &status, &events, grace).await;
            }
        }
        for sandbox in &status.sandboxes {
            self.remove_sandbox(&sandbox.id).await?;
        }
        self.refresh().await?;
        if let Err(error) = volumes::tear_down(&self.ctx.root_dir, &self.uid) {
            tracing::warn!(pod = %self.key, %error, "could not remove the pod's volumes");
        }
        if let Some(pod) = pod {
            let logs = spec::pod_log_dir(&self.ctx.log_dir, pod);
            if let Err(error) = std::fs::remove_dir_all(&logs) {
                if error.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(pod = %self.key, %error, "could not remove the pod's logs");
                }
            }
        }
        self.probes.clear();
        if let Some(pod) = pod {
            let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions { uid: Some(self.uid.clone()), resource_version: None }),
                ..Default::default()
            };
            match api.delete(pod.metadata.name.as_deref().unwrap_or_default(), &params).await {
                Ok(_) => {}
                // Gone, or another pod of that name now (the uid precondition).
                Err(error) if client::is_not_found(&error) => {}
                Err(error) if client::is_conflict(&error) && api.get_opt(pod.metadata.name.as_deref().unwrap_or_default()).await?.is_none_or(|now| now.metadata.uid.as_deref() != Some(self.uid.as_str())) => {}
                // Raced with other writes to the pod: the next sync tries again.
                Err(error) => return Err(error.into()),
            }
        }
        tracing::info!(pod = %self.key, "pod stopped and removed");
        Ok(())
    }
}

/// The status of a pod status's `Ready` condition.
fn ready_condition(status: Option<&ApiPodStatus>) -> Option<&str> {
    status?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready").map(|c| c.status.as_str())
}

/// Entrypoint and Cmd from an ImageStatus `info` entry, in containerd's shape
/// (`{"imageSpec": {"config": {"Entrypoint": [...], "Cmd": [...]}}}`).
pub fn image_process(info: &str) -> Option<ImageProcess> {
    let value: serde_json::Value = serde_json::from_str(info).ok()?;
    let config = value.get("imageSpec")?.get("config")?;
    let list = |key: &str| -> Vec<String> {
        config.get(key).and_then(|v| v.as_array()).map(|items| items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect()).unwrap_or_default()
    };
    Some(ImageProcess { entrypoint: list("Entrypoint"), cmd: list("Cmd") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_containerd_style_image_info() {
        let info = r#"{"imageSpec": {"config": {"Entrypoint": ["/docker-entrypoint.sh"], "Cmd": ["nginx", "-g", "daemon off;"]}}}"#;
        let process = image_process(info).unwrap();
        assert_eq!(process.entrypoint, ["/docker-entrypoint.sh"]);
        assert_eq!(process.cmd, ["nginx", "-g", "daemon off;"]);
        assert_eq!(image_process("{}"), None);
        assert_eq!(image_process("not json"), None);
    }
}
