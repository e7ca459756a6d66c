//! Deployments end to end on hollow nodes: roll out, roll a new image within
//! the surge and unavailability bounds (checked by a watcher), roll back, delete.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;

use client::informer::Informer;
use common::eventually;

const REPLICAS: i32 = 50;
const MAX_SURGE: i32 = 5;
const MAX_UNAVAILABLE: i32 = 5;
const WAIT: Duration = Duration::from_secs(60);

fn deployment(image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "web", "namespace": "default" },
        "spec": {
            "replicas": REPLICAS,
            "selector": { "matchLabels": { "app": "web" } },
            "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxSurge": "10%", "maxUnavailable": "10%" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": image,
                    "resources": { "requests": { "cpu": "10m", "memory": "16Mi" } } }] }
            }
        }
    }))
    .expect("a valid Deployment")
}

async fn rolled_out(api: &Api<Deployment>) -> Option<Deployment> {
    let d = api.get("web").await.ok()?;
    let status = d.status.clone()?;
    let done = status.observed_generation >= d.metadata.generation
        && status.updated_replicas == Some(REPLICAS)
        && status.available_replicas == Some(REPLICAS)
        && status.replicas == Some(REPLICAS);
    done.then_some(d)
}

fn image_of(rs: &ReplicaSet) -> String {
    rs.spec.as_ref().and_then(|s| s.template.as_ref()).and_then(|t| t.spec.as_ref()).and_then(|s| s.containers[0].image.clone()).unwrap_or_default()
}

/// Watches pods and remembers any moment where more than `replicas + maxSurge`
/// pods existed or fewer than `replicas - maxUnavailable` were ready.
struct BoundsWatcher {
    violation: Arc<Mutex<Option<String>>>,
    armed: Arc<AtomicBool>,
    _watch: client::AbortOnDrop,
}

impl BoundsWatcher {
    async fn start(client: kube::Client) -> Self {
        let pods: Informer<Pod> = Informer::new();
        let violation = Arc::new(Mutex::new(None));
        let armed = Arc::new(AtomicBool::new(false));
        let (reader, seen, on) = (pods.clone(), violation.clone(), armed.clone());
        pods.on_change(move |_| {
            if !on.load(Ordering::SeqCst) {
                return;
            }
            let live: Vec<_> = reader.list_namespace("default").into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
            let ready = live.iter().filter(|p| controller::pods::is_ready(p)).count() as i32;
            let total = live.len() as i32;
            if total > REPLICAS + MAX_SURGE || ready < REPLICAS - MAX_UNAVAILABLE {
                seen.lock().unwrap().get_or_insert(format!("{total} pods, {ready} ready"));
            }
        });
        let watch = pods.start(Api::namespaced(client, "default"), watcher::Config::default());
        pods.wait_synced().await;
        Self { violation, armed, _watch: client::AbortOnDrop(vec![watch]) }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_rolls_out_updates_within_bounds_rolls_back_and_is_deleted() {
    let cluster = common::start(5, Default::default()).await;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let replicasets: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");

    deployments.create(&PostParams::default(), &deployment("nginx:1")).await.expect("create");
    let d = eventually("50 replicas available", WAIT, || rolled_out(&deployments)).await;
    let conditions = d.status.unwrap().conditions.unwrap();
    let progressing = conditions.iter().find(|c| c.type_ == "Progressing").unwrap();
    assert_eq!(progressing.reason.as_deref(), Some("NewReplicaSetAvailable"));
    let first_rs = replicasets.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(first_rs.len(), 1);
    let first_name = first_rs[0].name_any();
    let placed = pods.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(placed.len(), REPLICAS as usize);
    assert!(placed.iter().all(|p| p.spec.as_ref().unwrap().node_name.is_some()));

    let watcher = BoundsWatcher::start(cluster.client.clone()).await;
    watcher.armed.store(true, Ordering::SeqCst);
    let patch = json!({ "spec": { "template": { "spec": { "containers": [{ "name": "web", "image": "nginx:2" }] } } } });
    deployments.patch("web", &PatchParams::default(), &Patch::Strategic(patch)).await.expect("new image");
    eventually("the new image rolled out", WAIT, || async {
        let d = rolled_out(&deployments).await?;
        (d.metadata.generation == Some(2)).then_some(())
    })
    .await;
    let sets = replicasets.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(sets.len(), 2);
    let new = sets.iter().find(|rs| image_of(rs) == "nginx:2").expect("a ReplicaSet for nginx:2");
    assert_eq!(new.annotations()["deployment.kubernetes.io/revision"], "2");
    let old = sets.iter().find(|rs| rs.name_any() == first_name).unwrap();
    assert_eq!(old.spec.as_ref().unwrap().replicas, Some(0));
    assert_eq!(*watcher.violation.lock().unwrap(), None, "bounds held during the rollout");

    // `rollout undo`: the old template comes back, and with it the old ReplicaSet.
    let undo = json!({ "spec": { "template": { "spec": { "containers": [{ "name": "web", "image": "nginx:1" }] } } } });
    deployments.patch("web", &PatchParams::default(), &Patch::Strategic(undo)).await.expect("rollback");
    eventually("the rollback", WAIT, || async {
        let d = rolled_out(&deployments).await?;
        (d.metadata.generation == Some(3)).then_some(())
    })
    .await;
    let back = replicasets.get(&first_name).await.unwrap();
    assert_eq!(back.spec.as_ref().unwrap().replicas, Some(REPLICAS));
    assert_eq!(back.annotations()["deployment.kubernetes.io/revision"], "3");
    assert_eq!(*watcher.violation.lock().unwrap(), None, "bounds held during the rollback");
    watcher.armed.store(false, Ordering::SeqCst);

    deployments.delete("web", &DeleteParams::background()).await.expect("delete");
    eventually("ReplicaSets and pods gone", WAIT, || async {
        let sets = replicasets.list(&ListParams::default()).await.ok()?.items;
        let left = pods.list(&ListParams::default()).await.ok()?.items;
        (sets.is_empty() && left.is_empty()).then_some(())
    })
    .await;
}
