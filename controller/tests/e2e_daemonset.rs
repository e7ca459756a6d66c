//! DaemonSets end to end on hollow nodes: one pod per eligible node, following
//! nodes as they come, get tainted and go; a new template rolled within
//! `maxUnavailable` (checked by a watcher); deletion cascading to the pods.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use controller::daemonset::plan::CONTROLLER_REVISION_HASH;
use node_agent::hollow::{HollowNodes, HollowSettings};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;

use client::informer::Informer;
use common::eventually;

const WAIT: Duration = Duration::from_secs(60);

fn daemonset(max_unavailable: i32) -> DaemonSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": { "name": "agent", "namespace": "default" },
        "spec": {
            "selector": { "matchLabels": { "app": "agent" } },
            "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": max_unavailable } },
            "template": {
                "metadata": { "labels": { "app": "agent" } },
                "spec": { "containers": [{ "name": "agent", "image": "agent:1" }] }
            }
        }
    }))
    .expect("a valid DaemonSet")
}

/// Live daemon pods by the node they are bound to.
async fn pods_by_node(pods: &Api<Pod>) -> Option<Vec<(String, Pod)>> {
    let list = pods.list(&ListParams::default().labels("app=agent")).await.ok()?.items;
    Some(
        list.into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| Some((p.spec.as_ref()?.node_name.clone()?, p)))
            .collect(),
    )
}

/// The DaemonSet's status once it has caught up with `desired` nodes, all
/// updated and available.
async fn settled(api: &Api<DaemonSet>, desired: i32) -> Option<DaemonSet> {
    let ds = api.get("agent").await.ok()?;
    let status = ds.status.clone()?;
    let done = status.observed_generation >= ds.metadata.generation
        && status.desired_number_scheduled == desired
        && status.current_number_scheduled == desired
        && status.number_ready == desired
        && status.number_available == Some(desired)
        && status.updated_number_scheduled == Some(desired)
        && status.number_misscheduled == 0;
    done.then_some(ds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemonset_runs_one_pod_per_eligible_node_and_follows_the_nodes() {
    let cluster = common::start(5, Default::default()).await;
    let daemonsets: Api<DaemonSet> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let nodes: Api<Node> = Api::all(cluster.client.clone());

    daemonsets.create(&PostParams::default(), &daemonset(1)).await.expect("create");
    settled_on(&daemonsets, &pods, 5).await;
    let placed = pods_by_node(&pods).await.unwrap();
    let on: BTreeSet<&str> = placed.iter().map(|(node, _)| node.as_str()).collect();
    assert_eq!(on, cluster.nodes.names().iter().map(String::as_str).collect(), "one pod on every node");
    let (_, pod) = &placed[0];
    let tolerations = pod.spec.as_ref().unwrap().tolerations.clone().unwrap();
    assert!(tolerations.iter().any(|t| t.key.as_deref() == Some("node.kubernetes.io/unreachable") && t.effect.as_deref() == Some("NoExecute")));
    assert!(pod.labels().contains_key(CONTROLLER_REVISION_HASH));

    // A taint the daemon does not tolerate with NoExecute drives its pod away.
    let tainted = &cluster.nodes.names()[4];
    let taint = json!({ "spec": { "taints": [{ "key": "dedicated", "value": "db", "effect": "NoExecute" }] } });
    nodes.patch(tainted, &PatchParams::default(), &Patch::Merge(taint)).await.expect("taint");
    let left = settled_on(&daemonsets, &pods, 4).await;
    assert!(left.iter().all(|node| node != tainted), "no pod on the tainted node");

    // New nodes get their pod.
    let hollow = HollowSettings { ready_delay: Duration::from_millis(20), ..Default::default() };
    let extra = HollowNodes::start(cluster.client.clone(), "extra", 2, hollow).await.expect("more nodes");
    let now_on = settled_on(&daemonsets, &pods, 6).await;
    assert!(extra.names().iter().all(|n| now_on.contains(n)), "the new nodes run the daemon");

    // So does a node that comes with a label the daemon selects, and only that one.
    let selective = json!({ "spec": { "template": { "spec": { "nodeSelector": { "node.r8s.io/hollow": "true", "pool": "edge" } } } } });
    daemonsets.patch("agent", &PatchParams::default(), &Patch::Merge(selective)).await.expect("select a pool");
    let label = json!({ "metadata": { "labels": { "pool": "edge" } } });
    nodes.patch(&extra.names()[0], &PatchParams::default(), &Patch::Merge(label)).await.expect("label");
    let selected = settled_on(&daemonsets, &pods, 1).await;
    assert_eq!(selected, [extra.names()[0].clone()]);

    // Deleting the DaemonSet takes its pods along.
    daemonsets.delete("agent", &DeleteParams::background()).await.expect("delete");
    eventually("the daemon pods gone", WAIT, || async {
        let left = pods.list(&ListParams::default()).await.ok()?.items;
        left.is_empty().then_some(())
    })
    .await;
}

/// Waits until the DaemonSet runs settled on exactly `count` nodes; returns them.
async fn settled_on(daemonsets: &Api<DaemonSet>, pods: &Api<Pod>, count: i32) -> Vec<String> {
    eventually(&format!("the daemon settled on {count} node(s)"), WAIT, || async {
        settled(daemonsets, count).await?;
        let placed = pods_by_node(pods).await?;
        let nodes: Vec<String> = placed.into_iter().map(|(node, _)| node).collect();
        (nodes.len() == count as usize).then_some(nodes)
    })
    .await
}

/// Watches the daemon pods and remembers any moment where fewer than
/// `nodes - maxUnavailable` live pods were ready, or a node had two.
struct AvailabilityWatcher {
    violation: Arc<Mutex<Option<String>>>,
    armed: Arc<AtomicBool>,
    _watch: client::AbortOnDrop,
}

impl AvailabilityWatcher {
    async fn start(client: kube::Client, nodes: usize, max_unavailable: usize) -> Self {
        let pods: Informer<Pod> = Informer::new();
        let violation = Arc::new(Mutex::new(None));
        let armed = Arc::new(AtomicBool::new(false));
        let (reader, seen, on) = (pods.clone(), violation.clone(), armed.clone());
        pods.on_change(move |_| {
            if !on.load(Ordering::SeqCst) {
                return;
            }
            let live: Vec<_> = reader.list_namespace("default").into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
            let ready = live.iter().filter(|p| controller::pods::is_ready(p)).count();
            let bound: Vec<_> = live.iter().filter_map(|p| p.spec.as_ref()?.node_name.clone()).collect();
            let distinct: BTreeSet<_> = bound.iter().collect();
            if ready + max_unavailable < nodes || distinct.len() < bound.len() {
                seen.lock().unwrap().get_or_insert(format!("{} live pods, {ready} ready, on {} nodes", live.len(), distinct.len()));
            }
        });
        let watch = pods.start(Api::namespaced(client, "default"), watcher::Config::default());
        pods.wait_synced().await;
        Self { violation, armed, _watch: client::AbortOnDrop(vec![watch]) }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_template_rolls_within_max_unavailable_and_kubectl_sees_it_done() {
    const NODES: usize = 8;
    const MAX_UNAVAILABLE: i32 = 2;
    let cluster = common::start(NODES, Default::default()).await;
    let daemonsets: Api<DaemonSet> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    daemonsets.create(&PostParams::default(), &daemonset(MAX_UNAVAILABLE)).await.expect("create");
    let first = eventually("the first revision everywhere", WAIT, || settled(&daemonsets, NODES as i32)).await;
    let first_hash = pods_by_node(&pods).await.unwrap()[0].1.labels()[CONTROLLER_REVISION_HASH].clone();

    let watcher = AvailabilityWatcher::start(cluster.client.clone(), NODES, MAX_UNAVAILABLE as usize).await;
    watcher.armed.store(true, Ordering::SeqCst);
    let patch = json!({ "spec": { "template": { "spec": { "containers": [{ "name": "agent", "image": "agent:2" }] } } } });
    daemonsets.patch("agent", &PatchParams::default(), &Patch::Strategic(patch)).await.expect("new image");
    let done = eventually("the new revision everywhere", WAIT, || async {
        let ds = settled(&daemonsets, NODES as i32).await?;
        (ds.metadata.generation > first.metadata.generation).then_some(ds)
    })
    .await;
    watcher.armed.store(false, Ordering::SeqCst);
    assert_eq!(*watcher.violation.lock().unwrap(), None, "maxUnavailable held during the rollout");
    assert_eq!(done.status.unwrap().observed_generation, Some(2));
    let placed = pods_by_node(&pods).await.unwrap();
    assert_eq!(placed.len(), NODES);
    for (_, pod) in &placed {
        assert_eq!(pod.spec.as_ref().unwrap().containers[0].image.as_deref(), Some("agent:2"));
        assert_ne!(pod.labels()[CONTROLLER_REVISION_HASH], first_hash);
    }

    // kubectl reads the same status fields to decide that the rollout is done.
    let kubectl = std::path::Path::new("/usr/bin/kubectl");
    if kubectl.exists() {
        let cache = std::env::temp_dir().join(format!("r8s-ds-kubectl-{}", std::process::id()));
        let output = std::process::Command::new(kubectl)
            .args(["rollout", "status", "daemonset/agent", "-n", "default", "--timeout=30s", "--server", &cluster.url])
            .arg(format!("--cache-dir={}", cache.display()))
            .env("KUBECONFIG", "/dev/null")
            .output()
            .expect("run kubectl");
        let _ = std::fs::remove_dir_all(&cache);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "kubectl failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains("daemon set \"agent\" successfully rolled out"), "{stdout}");
    }
}
