//! The pod lifecycle event generator: one cache of what the runtime has for
//! every pod of the node, kept by the runtime's container events and checked
//! by a relist, as the kubelet's evented PLEG does. A worker reads its pod
//! from here instead of asking the runtime, and is woken only when its pod
//! changed.
//!
//! - Events (CRI `GetContainerEvents`) each carry a snapshot of one sandbox
//!   and its containers; the cache takes a snapshot only if it is newer than
//!   what it holds for that sandbox.
//! - A relist (two list calls; statuses fetched only for what changed) runs
//!   after every (re)connection of the event stream and every 300 s, and every
//!   second while the runtime gives no events (not up, or no events at all).
//! - A worker that acted refreshes its own pod at once ([`PodCache::refresh_pod`]),
//!   so its next decision never misses its own writes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{watch, Notify};

use super::actions::{PodStatus, SandboxView};
use super::labels;
use super::status::{Instance, RunState};
use crate::cri::{api, events::now_nanos, Cri};

/// How often the cache is relisted while events flow.
const EVENTED_RELIST: Duration = Duration::from_secs(300);
/// How often it is relisted while the runtime gives no events.
const GENERIC_RELIST: Duration = Duration::from_secs(1);
/// How long to relist generically before asking for events again.
const EVENTS_RETRY: Duration = Duration::from_secs(5);

/// One sandbox as the cache holds it, and when that was true (runtime ns).
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    sandbox: api::PodSandboxStatus,
    containers: Vec<api::ContainerStatus>,
    at: i64,
}

#[derive(Default)]
struct Pods {
    /// uid → sandbox id → entry.
    sandboxes: HashMap<String, HashMap<String, Entry>>,
    wakers: HashMap<String, Arc<Notify>>,
}

/// The node's pods as the runtime has them.
pub struct PodCache {
    pods: Mutex<Pods>,
    synced: watch::Sender<bool>,
}

impl Default for PodCache {
    fn default() -> Self {
        Self { pods: Mutex::new(Pods::default()), synced: watch::channel(false).0 }
    }
}

fn uid_of(sandbox: &api::PodSandboxStatus) -> String {
    sandbox.metadata.as_ref().map(|m| m.uid.clone()).filter(|uid| !uid.is_empty()).or_else(|| sandbox.labels.get(labels::POD_UID).cloned()).unwrap_or_default()
}

/// A CRI container status as the agent reasons about it.
pub fn instance_of(status: &api::ContainerStatus) -> Instance {
    let state = match api::ContainerState::try_from(status.state) {
        Ok(api::ContainerState::ContainerCreated) => RunState::Created,
        Ok(api::ContainerState::ContainerRunning) => RunState::Running,
        Ok(api::ContainerState::ContainerExited) => RunState::Exited,
        _ => RunState::Unknown,
    };
    Instance {
        restart_count: labels::restart_count(&status.annotations),
        id: status.id.clone(),
        state,
        exit_code: status.exit_code,
        reason: status.reason.clone(),
        message: status.message.clone(),
        started_at: status.started_at,
        finished_at: status.finished_at,
        image: status.image.as_ref().map(|i| i.image.clone()).unwrap_or_default(),
        image_ref: status.image_ref.clone(),
        log_path: status.log_path.clone(),
    }
}

/// The agent's view of one pod's sandboxes and containers (pure).
fn view(entries: Option<&HashMap<String, Entry>>) -> PodStatus {
    let mut status = PodStatus::default();
    for entry in entries.into_iter().flat_map(|e| e.values()) {
        let network = entry.sandbox.network.as_ref();
        let ips = network.map(|n| std::iter::once(n.ip.clone()).chain(n.additional_ips.iter().map(|ip| ip.ip.clone())).filter(|ip| !ip.is_empty()).collect()).unwrap_or_default();
        status.sandboxes.push(SandboxView {
            id: entry.sandbox.id.clone(),
            attempt: entry.sandbox.metadata.as_ref().map_or(0, |m| m.attempt),
            ready: entry.sandbox.state == api::PodSandboxState::SandboxReady as i32,
            ips,
            created_at: entry.sandbox.created_at,
        });
        for container in &entry.containers {
            let Some(name) = container.labels.get(labels::CONTAINER_NAME).cloned().or_else(|| container.metadata.as_ref().map(|m| m.name.clone())) else { continue };
            status.containers.entry(name).or_default().push(instance_of(container));
        }
    }
    status.sandboxes.sort_by_key(|s| std::cmp::Reverse((s.created_at, s.attempt)));
    for list in status.containers.values_mut() {
        list.sort_by_key(|i| std::cmp::Reverse((i.restart_count, i.started_at, i.finished_at)));
    }
    status
}

impl PodCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pods> {
        self.pods.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What the runtime has for the pod.
    pub fn get(&self, uid: &str) -> PodStatus {
        view(self.lock().sandboxes.get(uid))
    }

    /// Every (pod uid, sandbox id) the runtime has.
    pub fn sandboxes(&self) -> Vec<(String, String)> {
        self.lock().sandboxes.iter().flat_map(|(uid, entries)| entries.keys().map(move |id| (uid.clone(), id.clone()))).collect()
    }

    /// Wakes `wake` whenever the pod changes.
    pub fn watch(&self, uid: &str, wake: Arc<Notify>) {
        self.lock().wakers.insert(uid.to_string(), wake);
    }

    pub fn unwatch(&self, uid: &str) {
        self.lock().wakers.remove(uid);
    }

    /// Waits until the first relist is in (before it, no pod looks as if it
    /// had no sandbox, which would make a worker start a second one).
    pub async fn wait_synced(&self) {
        let mut synced = self.synced.subscribe();
        let _ = synced.wait_for(|synced| *synced).await;
    }

    /// Applies `change` to a pod's sandboxes, and wakes its worker if that
    /// changed what it sees.
    fn update(&self, uid: &str, change: impl FnOnce(&mut HashMap<String, Entry>)) {
        let mut pods = self.lock();
        let before = view(pods.sandboxes.get(uid));
        let entries = pods.sandboxes.entry(uid.to_string()).or_default();
        change(entries);
        if entries.is_empty() {
            pods.sandboxes.remove(uid);
        }
        if view(pods.sandboxes.get(uid)) != before {
            if let Some(wake) = pods.wakers.get(uid) {
                wake.notify_one();
            }
        }
    }

    /// One runtime event: the snapshot of one sandbox, unless the cache holds a newer one.
    pub fn apply_event(&self, event: api::ContainerEventResponse) {
        let Some(sandbox) = event.pod_sandbox_status else { return };
        let (uid, id, at) = (uid_of(&sandbox), sandbox.id.clone(), event.created_at);
        let deleted = event.container_event_type == api::ContainerEventType::ContainerDeletedEvent as i32 && event.container_id == id;
        self.update(&uid, |entries| {
            if entries.get(&id).is_some_and(|entry| entry.at > at) {
                return;
            }
            if deleted {
                entries.remove(&id);
            } else {
                entries.insert(id, Entry { sandbox, containers: event.containers_statuses, at });
            }
        });
    }

    /// Reads the runtime's sandboxes (all, or one pod's) and replaces what
    /// changed since `at` was taken; sandboxes no longer listed go.
    async fn relist(&self, cri: &Cri, uid: Option<&str>) -> Result<(), tonic::Status> {
        let at = now_nanos();
        let by_uid = |uid: &str| [(labels::POD_UID.to_string(), uid.to_string())].into();
        let sandbox_filter = uid.map(|uid| api::PodSandboxFilter { label_selector: by_uid(uid), ..Default::default() });
        let sandboxes = cri.runtime.list_pod_sandbox(sandbox_filter).await?;
        let container_filter = uid.map(|uid| api::ContainerFilter { label_selector: by_uid(uid), ..Default::default() });
        let containers = cri.runtime.list_containers(container_filter).await?;
        let mut listed: HashMap<String, HashMap<String, Entry>> = HashMap::new();
        for sandbox in &sandboxes {
            let owner = sandbox.metadata.as_ref().map(|m| m.uid.clone()).unwrap_or_default();
            let ours: Vec<&api::Container> = containers.iter().filter(|c| c.pod_sandbox_id == sandbox.id).collect();
            // Only what changed is read again (the generic PLEG's diff).
            let cached = self.lock().sandboxes.get(&owner).and_then(|e| e.get(&sandbox.id)).cloned();
            let unchanged = cached.as_ref().is_some_and(|entry| {
                entry.sandbox.state == sandbox.state
                    && entry.containers.len() == ours.len()
                    && ours.iter().all(|c| entry.containers.iter().any(|s| s.id == c.id && s.state == c.state))
            });
            let entry = match cached {
                Some(entry) if unchanged => entry,
                _ => {
                    let Ok(reply) = cri.runtime.pod_sandbox_status(&sandbox.id, false).await else { continue };
                    let Some(status) = reply.status else { continue };
                    let mut statuses = Vec::new();
                    for container in &ours {
                        if let Ok(Some(status)) = cri.runtime.container_status(&container.id, false).await.map(|r| r.status) {
                            statuses.push(status);
                        }
                    }
                    Entry { sandbox: status, containers: statuses, at }
                }
            };
            listed.entry(owner).or_default().insert(sandbox.id.clone(), entry);
        }
        let pods: HashSet<String> = match uid {
            Some(uid) => [uid.to_string()].into(),
            None => self.lock().sandboxes.keys().cloned().chain(listed.keys().cloned()).collect(),
        };
        for pod in pods {
            let fresh = listed.remove(&pod).unwrap_or_default();
            self.update(&pod, |entries| {
                // Newer news (an event after `at`) wins over the list.
                entries.retain(|id, entry| entry.at > at || fresh.contains_key(id));
                for (id, entry) in fresh {
                    if entries.get(&id).is_none_or(|current| current.at <= at) {
                        entries.insert(id, entry);
                    }
                }
            });
        }
        Ok(())
    }

    /// Reads one pod from the runtime now (after its worker acted).
    pub async fn refresh_pod(&self, cri: &Cri, uid: &str) -> Result<(), tonic::Status> {
        self.relist(cri, Some(uid)).await
    }

    /// Keeps the cache for ever: events while the runtime gives them, a
    /// relist at every (re)connection and now and then, and every second
    /// while no events come.
    pub async fn run(self: Arc<Self>, cri: Cri) {
        loop {
            match cri.runtime.get_container_events().await {
                Ok(mut events) => {
                    if self.relist(&cri, None).await.is_ok() {
                        self.synced.send_replace(true);
                    }
                    let mut relist = tokio::time::interval_at(tokio::time::Instant::now() + EVENTED_RELIST, EVENTED_RELIST);
                    loop {
                        tokio::select! {
                            event = events.next() => match event {
                                Some(Ok(event)) => self.apply_event(event),
                                Some(Err(status)) => {
                                    tracing::info!(%status, "the runtime's event stream ended; relisting");
                                    break;
                                }
                                None => break,
                            },
                            _ = relist.tick() => {
                                if let Err(status) = self.relist(&cri, None).await {
                                    tracing::debug!(%status, "relist failed");
                                }
                            }
                        }
                    }
                }
                Err(status) => {
                    tracing::debug!(%status, "no container events from the runtime; relisting every second");
                    let until = tokio::time::Instant::now() + EVENTS_RETRY;
                    while tokio::time::Instant::now() < until {
                        if self.relist(&cri, None).await.is_ok() {
                            self.synced.send_replace(true);
                        }
                        tokio::time::sleep(GENERIC_RELIST).await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::fake::{FakeConfig, FakeRuntime};

    fn sandbox_config(uid: &str) -> api::PodSandboxConfig {
        api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata { name: format!("pod-{uid}"), uid: uid.into(), namespace: "default".into(), attempt: 0 }),
            labels: labels::pod_labels("default", &format!("pod-{uid}"), uid),
            ..Default::default()
        }
    }

    fn container_config(name: &str) -> api::ContainerConfig {
        api::ContainerConfig {
            metadata: Some(api::ContainerMetadata { name: name.into(), attempt: 0 }),
            image: Some(api::ImageSpec { image: "busybox".into(), ..Default::default() }),
            labels: [(labels::CONTAINER_NAME.to_string(), name.to_string())].into(),
            ..Default::default()
        }
    }

    /// Waits to be woken (a notification may also stand from an earlier
    /// change) until pod u1 looks as `check` wants.
    async fn woken_until(cache: &PodCache, wake: &Notify, check: impl Fn(&PodStatus) -> bool) -> bool {
        let woken = async {
            while !check(&cache.get("u1")) {
                wake.notified().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), woken).await.is_ok()
    }

    #[tokio::test]
    async fn events_keep_the_cache_and_wake_the_pods_worker() {
        let fake = FakeRuntime::new(FakeConfig::default());
        let cri = Cri::new(fake.clone());
        let cache = Arc::new(PodCache::default());
        let _pleg = client::AbortOnDrop(vec![tokio::spawn(cache.clone().run(cri.clone()))]);
        cache.wait_synced().await;
        let wake = Arc::new(Notify::new());
        cache.watch("u1", wake.clone());

        let sandbox = cri.runtime.run_pod_sandbox(sandbox_config("u1"), "").await.unwrap();
        let id = cri.runtime.create_container(&sandbox, container_config("main"), None).await.unwrap();
        cri.runtime.start_container(&id).await.unwrap();
        assert!(woken_until(&cache, &wake, |status| status.current("main").is_some_and(|i| i.state == RunState::Running)).await, "woken with the container running");
        let status = cache.get("u1");
        assert_eq!(status.sandboxes.len(), 1);
        assert!(status.sandboxes[0].ready && !status.sandboxes[0].ips.is_empty());

        fake.exit(&id, 1, "Error");
        assert!(woken_until(&cache, &wake, |status| status.current("main").is_some_and(|i| i.exit_code == 1)).await, "woken by the exit");
        cri.runtime.remove_pod_sandbox(&sandbox).await.unwrap();
        assert!(woken_until(&cache, &wake, |status| *status == PodStatus::default()).await, "woken by the removal");
    }

    #[tokio::test]
    async fn a_stale_event_never_replaces_newer_news_and_a_relist_finds_what_was_missed() {
        let fake = FakeRuntime::new(FakeConfig::default());
        let cri = Cri::new(fake.clone());
        let cache = PodCache::default();
        let sandbox = cri.runtime.run_pod_sandbox(sandbox_config("u2"), "").await.unwrap();
        // Nobody listened: the relist finds it.
        cache.relist(&cri, None).await.unwrap();
        assert_eq!(cache.get("u2").sandboxes.len(), 1);
        let snapshot = cri.runtime.pod_sandbox_status(&sandbox, false).await.unwrap().status.unwrap();
        let event = |at: i64, kind: api::ContainerEventType| api::ContainerEventResponse {
            container_id: sandbox.clone(),
            container_event_type: kind as i32,
            created_at: at,
            pod_sandbox_status: Some(snapshot.clone()),
            containers_statuses: Vec::new(),
        };
        // A deletion stamped before the relist is old news.
        cache.apply_event(event(1, api::ContainerEventType::ContainerDeletedEvent));
        assert_eq!(cache.get("u2").sandboxes.len(), 1);
        cache.apply_event(event(now_nanos() + 1_000_000_000, api::ContainerEventType::ContainerDeletedEvent));
        assert!(cache.get("u2").sandboxes.is_empty());
        // Gone from the runtime: a relist removes what the cache still had.
        cache.relist(&cri, None).await.unwrap();
        cri.runtime.remove_pod_sandbox(&sandbox).await.unwrap();
        cache.relist(&cri, None).await.unwrap();
        assert!(cache.sandboxes().is_empty());
    }
}
