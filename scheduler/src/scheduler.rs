//! The scheduler process: watches pods and nodes into the cache and the queue,
//! schedules one pod at a time, and binds in the background so the next pod does
//! not wait for the API.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::Semaphore;

use client::events::{reference_to, EventRecorder, EventType};
use client::informer::{Change, Informer};
use client::leader::LeaderElection;

use crate::cache::{Cache, PodInfo};
use crate::framework::{CycleState, FitError, Framework, Nomination};
use crate::plugins::default_framework;
use crate::queue::SchedulingQueue;
use crate::DEFAULT_SCHEDULER;

/// How long an assumed pod waits for the watch to confirm its binding.
const ASSUMED_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Settings {
    /// Pods with this `schedulerName` are ours.
    pub scheduler_name: String,
    /// Bindings in flight at once.
    pub bind_concurrency: usize,
    /// Lease-based leader election; `None` runs unconditionally.
    pub leader_election: Option<LeaderElection>,
}

impl Default for Settings {
    fn default() -> Self {
        Self { scheduler_name: DEFAULT_SCHEDULER.into(), bind_concurrency: 64, leader_election: None }
    }
}

/// Schedules until the future is dropped (or leadership is lost).
pub async fn run(client: Client, settings: Settings) -> Result<(), client::Error> {
    match settings.leader_election.clone() {
        Some(election) => election.run(client.clone(), schedule(client, settings)).await,
        None => {
            schedule(client, settings).await;
            Ok(())
        }
    }
}

struct Scheduler {
    client: Client,
    settings: Settings,
    framework: Framework,
    cache: Mutex<Cache>,
    queue: SchedulingQueue,
    pods: Informer<Pod>,
    recorder: EventRecorder,
    next_start: AtomicUsize,
    random: AtomicU64,
    bind_slots: Arc<Semaphore>,
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded") | Some("Failed"))
}

/// What about a node matters to scheduling; heartbeats change none of it.
fn scheduling_view(node: &Node) -> impl PartialEq + '_ {
    (
        node.metadata.labels.as_ref(),
        node.spec.as_ref(),
        node.status.as_ref().and_then(|s| s.allocatable.as_ref()),
    )
}

async fn schedule(client: Client, settings: Settings) {
    let pods: Informer<Pod> = Informer::new();
    let nodes: Informer<Node> = Informer::new();
    let scheduler = Arc::new(Scheduler {
        recorder: EventRecorder::new(client.clone(), settings.scheduler_name.clone()),
        bind_slots: Arc::new(Semaphore::new(settings.bind_concurrency.max(1))),
        client: client.clone(),
        settings,
        framework: default_framework(),
        cache: Mutex::new(Cache::new()),
        queue: SchedulingQueue::new(),
        pods: pods.clone(),
        next_start: AtomicUsize::new(0),
        random: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
    });
    let s = scheduler.clone();
    nodes.on_change(move |change| s.node_changed(change));
    let s = scheduler.clone();
    pods.on_change(move |change| s.pod_changed(change));
    let mut tasks = client::AbortOnDrop(vec![
        nodes.start(Api::all(client.clone()), watcher::Config::default()),
        pods.start(Api::all(client.clone()), watcher::Config::default()),
    ]);
    nodes.wait_synced().await;
    pods.wait_synced().await;
    tracing::info!(scheduler = %scheduler.settings.scheduler_name, "scheduler started");
    let s = scheduler.clone();
    tasks.0.push(tokio::spawn(async move {
        loop {
            tokio::time::sleep(ASSUMED_TTL / 3).await;
            s.lock_cache().expire_assumed(ASSUMED_TTL);
        }
    }));
    loop {
        let (key, cycle) = scheduler.queue.pop().await;
        scheduler.schedule_one(&key, cycle);
        // Let the informers and binders run between cycles.
        tokio::task::yield_now().await;
    }
}

impl Scheduler {
    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_ours(&self, pod: &Pod) -> bool {
        let name = pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()).unwrap_or(DEFAULT_SCHEDULER);
        name == self.settings.scheduler_name
    }

    fn node_changed(&self, change: &Change<Node>) {
        match change {
            Change::Applied { old, new } => {
                self.lock_cache().set_node(new.clone());
                if old.as_ref().is_none_or(|old| scheduling_view(old) != scheduling_view(new)) {
                    self.queue.move_all_parked();
                }
            }
            Change::Deleted(node) => self.lock_cache().remove_node(&node.name_any()),
        }
    }

    fn pod_changed(&self, change: &Change<Pod>) {
        let pod = change.object();
        let key = client::object_key(pod.metadata.namespace.as_deref(), &pod.name_any());
        match (change, node_of(pod)) {
            (Change::Deleted(_), node) => {
                self.lock_cache().remove_pod(&key);
                self.queue.forget(&key);
                if node.is_some() {
                    self.queue.move_all_parked();
                }
            }
            (Change::Applied { .. }, Some(_)) if is_terminal(pod) => {
                self.lock_cache().remove_pod(&key);
                self.queue.move_all_parked();
            }
            (Change::Applied { .. }, Some(node)) => {
                self.lock_cache().add_bound_pod(Arc::new(PodInfo::new(pod.clone())), node);
                self.queue.forget(&key);
            }
            (Change::Applied { .. }, None) => {
                if self.is_ours(pod) && pod.metadata.deletion_timestamp.is_none() && !is_terminal(pod) {
                    self.queue.add(&key, priority(pod));
                }
            }
        }
    }

    /// One scheduling cycle: pick a node (or find why none fits), assume the pod
    /// there, and hand the binding to a background task.
    fn schedule_one(self: &Arc<Self>, key: &str, cycle: u64) {
        let Some(pod) = self.pods.get_by_key(key) else { return };
        if node_of(&pod).is_some() || pod.metadata.deletion_timestamp.is_some() || !self.is_ours(&pod) {
            return;
        }
        let info = Arc::new(PodInfo::new(pod.clone()));
        let mut cache = self.lock_cache();
        if cache.is_placed(key) {
            return;
        }
        match self.pick_node(&info, &cache) {
            Ok(node) => {
                if let Err(reason) = self.framework.reserve.iter().try_for_each(|p| p.reserve(&info, &node)) {
                    self.framework.reserve.iter().for_each(|p| p.unreserve(&info, &node));
                    drop(cache);
                    let error = FitError { nodes: 1, reasons: [(reason, 1)].into() };
                    self.queue.park(key, priority(&pod), cycle);
                    self.report_unschedulable(pod, error);
                    return;
                }
                cache.assume(info.clone(), &node);
                drop(cache);
                let scheduler = self.clone();
                tokio::spawn(async move { scheduler.bind(info, node).await });
            }
            Err(error) => {
                let nomination = self.framework.post_filter.iter().find_map(|plugin| plugin.post_filter(&info, &cache, &error));
                drop(cache);
                self.queue.park(key, priority(&pod), cycle);
                if let Some(nomination) = nomination {
                    self.preempt(pod.clone(), nomination);
                }
                self.report_unschedulable(pod, error);
            }
        }
    }

    fn pick_node(&self, pod: &PodInfo, cache: &Cache) -> Result<String, FitError> {
        let mut state = CycleState::default();
        let start = self.next_start.load(Ordering::Relaxed);
        let filtered = self.framework.find_feasible(&mut state, pod, cache, start)?;
        let all = cache.node_count().max(1);
        self.next_start.store((start + filtered.processed) % all, Ordering::Relaxed);
        if let [only] = filtered.feasible.as_slice() {
            return Ok(only.name.clone());
        }
        let scores = self.framework.score(&mut state, pod, &filtered.feasible, cache);
        // Among the best, pick at random (reservoir sampling, as Kubernetes does).
        let mut best = (i64::MIN, 0, 0usize);
        for (index, score) in scores.iter().enumerate() {
            if *score > best.0 {
                best = (*score, index, 1);
            } else if *score == best.0 {
                best.2 += 1;
                if self.next_random().is_multiple_of(best.2 as u64) {
                    best.1 = index;
                }
            }
        }
        Ok(filtered.feasible[best.1].name.clone())
    }

    fn next_random(&self) -> u64 {
        // xorshift64: tie-breaking needs no cryptographic randomness.
        let mut x = self.random.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random.store(x, Ordering::Relaxed);
        x
    }

    async fn bind(self: Arc<Self>, pod: Arc<PodInfo>, node: String) {
        let _slot = self.bind_slots.clone().acquire_owned().await;
        let name = pod.pod.name_any();
        let binding = Binding {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(pod.namespace.clone()), ..Default::default() },
            target: ObjectReference { api_version: Some("v1".into()), kind: Some("Node".into()), name: Some(node.clone()), ..Default::default() },
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
            match api.create_subresource::<Binding, serde_json::Value>("binding", &name, &PostParams::default(), &binding).await {
            Ok(_) => {
                self.queue.forget(&pod.key);
                let message = format!("Successfully assigned {}/{name} to {node}", pod.namespace);
                self.recorder.emit(reference_to(pod.pod.as_ref()), EventType::Normal, "Scheduled", message);
            }
            Err(error) => {
                self.lock_cache().remove_pod(&pod.key);
                self.framework.reserve.iter().for_each(|p| p.unreserve(&pod, &node));
                if client::is_not_found(&error) {
                    self.queue.forget(&pod.key);
                } else {
                    tracing::debug!(pod = %pod.key, %error, "binding failed; will retry");
                    self.queue.retry_after_backoff(&pod.key, priority(&pod.pod));
                }
            }
        }
    }

    /// Carries out a preemption: marks each victim with a `DisruptionTarget`
    /// condition, deletes it gracefully with a `Preempted` event, and records the
    /// node in the preemptor's `status.nominatedNodeName`. The preemptor is
    /// scheduled again when the victims' deletions show up in the watch.
    fn preempt(self: &Arc<Self>, preemptor: Arc<Pod>, nomination: Nomination) {
        let scheduler = self.clone();
        tokio::spawn(async move {
            let node = nomination.node;
            tracing::info!(pod = %preemptor.name_any(), %node, victims = nomination.victims.len(), "preempting");
            for victim in &nomination.victims {
                scheduler.evict(&preemptor, &victim.pod, &node).await;
            }
            let api: Api<Pod> = Api::namespaced(scheduler.client.clone(), preemptor.metadata.namespace.as_deref().unwrap_or_default());
            let patch = Patch::Merge(json!({ "status": { "nominatedNodeName": node } }));
            if let Err(error) = api.patch_status(&preemptor.name_any(), &PatchParams::default(), &patch).await {
                tracing::debug!(%error, "could not record the nominated node");
            }
        });
    }

    async fn evict(&self, preemptor: &Pod, victim: &Pod, node: &str) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), victim.metadata.namespace.as_deref().unwrap_or_default());
        let mut conditions: Vec<PodCondition> = victim.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        conditions.retain(|c| c.type_ != "DisruptionTarget");
        conditions.push(PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("PreemptionByScheduler".into()),
            message: Some(format!("{}: preempting to accommodate a higher priority pod", self.settings.scheduler_name)),
            last_transition_time: Some(client::time::now()),
            ..Default::default()
        });
        let patch = Patch::Merge(json!({ "status": { "conditions": conditions } }));
        if let Err(error) = api.patch_status(&victim.name_any(), &PatchParams::default(), &patch).await {
            tracing::debug!(%error, "could not mark the victim");
        }
        let params = DeleteParams { preconditions: Some(Preconditions { uid: victim.uid(), resource_version: None }), ..Default::default() };
        match api.delete(&victim.name_any(), &params).await {
            Ok(_) => {
                let message = format!("Preempted by pod {} on node {node}", preemptor.uid().unwrap_or_default());
                self.recorder.emit(reference_to(victim), EventType::Normal, "Preempted", message);
            }
            Err(error) if client::is_not_found(&error) || client::is_conflict(&error) => {}
            Err(error) => tracing::warn!(%error, victim = %victim.name_any(), "could not delete a preemption victim"),
        }
    }

    /// Sets `PodScheduled=False` (reason Unschedulable) and records a
    /// FailedScheduling event, unless the pod already says exactly that.
    fn report_unschedulable(self: &Arc<Self>, pod: Arc<Pod>, error: FitError) {
        let message = error.to_string();
        let conditions = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        let already = conditions
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "False" && c.message.as_deref() == Some(message.as_str()));
        if already {
            return;
        }
        let mut conditions: Vec<PodCondition> = conditions.into_iter().filter(|c| c.type_ != "PodScheduled").collect();
        conditions.push(PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some(message.clone()),
            last_transition_time: Some(client::time::now()),
            ..Default::default()
        });
        let scheduler = self.clone();
        tokio::spawn(async move {
            scheduler.recorder.emit(reference_to(pod.as_ref()), EventType::Warning, "FailedScheduling", message);
            let api: Api<Pod> = Api::namespaced(scheduler.client.clone(), pod.metadata.namespace.as_deref().unwrap_or_default());
            let patch = Patch::Merge(json!({ "status": { "conditions": conditions } }));
            if let Err(error) = api.patch_status(&pod.name_any(), &PatchParams::default(), &patch).await {
                tracing::debug!(%error, "could not record why a pod is unschedulable");
            }
        });
    }
}
