//! The DaemonSet reconcile as a pure function: from the DaemonSet, the nodes and
//! the pods of its namespace to what has to change (Kubernetes' `manage`,
//! `rollingUpdate` and `updateDaemonSetStatus`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod, PodTemplateSpec, Toleration};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use api::selector::Selector;
use scheduler::cache::{NodeInfo, PodInfo};
use scheduler::plugins::node_affinity::NodeConstraints;
use scheduler::plugins::taint_toleration::tolerates;

use crate::deployment::hash::pod_template_hash;
use crate::deployment::util::scaled_value;
use crate::pods;

/// The label naming the template revision a daemon pod was made from.
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";
/// The DaemonSet generation a pod was made from (deprecated in Kubernetes, still set).
pub const POD_TEMPLATE_GENERATION: &str = "pod-template-generation";

/// Taints every daemon pod tolerates (Kubernetes' `AddOrUpdateDaemonPodTolerations`):
/// a daemon keeps running on a node that is not ready or unreachable, and is
/// placed despite pressure and cordoning.
const DAEMON_TOLERATIONS: &[(&str, &str)] = &[
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];
/// Tolerated too by daemons on the host network (they bring the network up).
const HOST_NETWORK_TOLERATION: (&str, &str) = ("node.kubernetes.io/network-unavailable", "NoSchedule");

/// What one reconcile of a DaemonSet changes.
#[derive(Debug, Default)]
pub struct Plan {
    /// Orphans that match the selector: take them.
    pub adopt: Vec<Arc<Pod>>,
    /// Owned pods that no longer match: let them go.
    pub release: Vec<Arc<Pod>>,
    /// Nodes that need a daemon pod.
    pub create_on: Vec<String>,
    pub delete: Vec<Arc<Pod>>,
    /// The template daemon pods are made from: labels and tolerations added.
    pub template: PodTemplateSpec,
    pub status: DaemonSetStatus,
    /// Some pods are ready but not yet available: look again after this many seconds.
    pub recheck_after_seconds: Option<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("DaemonSet has no spec")]
    NoSpec,
    #[error(transparent)]
    Selector(#[from] api::selector::SelectorError),
    #[error("{0}")]
    Strategy(String),
}

/// The daemon pod template of `ds`: its template with the revision labels and
/// the daemon tolerations.
pub fn daemon_template(ds: &DaemonSet) -> Result<PodTemplateSpec, PlanError> {
    let spec = ds.spec.as_ref().ok_or(PlanError::NoSpec)?;
    let collisions = ds.status.as_ref().and_then(|s| s.collision_count);
    let hash = pod_template_hash(&spec.template, collisions);
    let mut template = spec.template.clone();
    let labels = template.metadata.get_or_insert_with(Default::default).labels.get_or_insert_with(BTreeMap::new);
    labels.insert(CONTROLLER_REVISION_HASH.into(), hash);
    labels.insert(POD_TEMPLATE_GENERATION.into(), ds.metadata.generation.unwrap_or(1).to_string());
    let pod_spec = template.spec.get_or_insert_with(Default::default);
    let host_network = pod_spec.host_network == Some(true);
    let tolerations = pod_spec.tolerations.get_or_insert_with(Vec::new);
    let wanted = DAEMON_TOLERATIONS.iter().chain(host_network.then_some(&HOST_NETWORK_TOLERATION));
    for (key, effect) in wanted {
        tolerations.retain(|t| !(t.key.as_deref() == Some(*key) && t.effect.as_deref() == Some(*effect)));
        tolerations.push(Toleration {
            key: Some((*key).into()),
            operator: Some("Exists".into()),
            effect: Some((*effect).into()),
            ..Default::default()
        });
    }
    Ok(template)
}

fn revision_hash(meta_labels: &BTreeMap<String, String>) -> Option<&str> {
    meta_labels.get(CONTROLLER_REVISION_HASH).map(String::as_str)
}

/// Kubernetes' `NodeShouldRunDaemonPod`: `(should run, should keep running)`.
/// A node must match the pod's `nodeName`, `nodeSelector` and required node
/// affinity; an untolerated NoSchedule taint keeps new pods off, an untolerated
/// NoExecute taint also evicts the running one.
pub fn should_run(daemon_pod: &PodInfo, node: &Arc<Node>) -> (bool, bool) {
    let name = node.metadata.name.clone().unwrap_or_default();
    let wanted_name = daemon_pod.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty());
    if wanted_name.is_some_and(|n| n != name) {
        return (false, false);
    }
    let mut info = NodeInfo { name, ..Default::default() };
    info.set_node(node.clone());
    if !NodeConstraints::of(daemon_pod).admits(&info) {
        return (false, false);
    }
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    let untolerated = |effect: &str| taints.iter().any(|t| t.effect == effect && !tolerates(daemon_pod, t));
    match (untolerated("NoSchedule"), untolerated("NoExecute")) {
        (_, true) => (false, false),
        (true, false) => (false, true),
        (false, false) => (true, true),
    }
}

/// The node a daemon pod is for: where it is bound, or, before binding, the
/// node its required `metadata.name` affinity names.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(name) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(name.clone());
    }
    let required = spec.affinity.as_ref()?.node_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref()?;
    required.node_selector_terms.iter().flat_map(|t| t.match_fields.iter().flatten()).find_map(|f| {
        (f.key == "metadata.name" && f.operator == "In").then(|| f.values.as_ref()?.first().cloned()).flatten()
    })
}

fn is_failed(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
}

fn oldest_first(a: &Arc<Pod>, b: &Arc<Pod>) -> std::cmp::Ordering {
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    created(a).cmp(&created(b)).then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// `(maxSurge, maxUnavailable)` as numbers of nodes, both rounded up as the
/// DaemonSet controller does; both zero would deadlock, so unavailable becomes one.
pub fn rolling_bounds(ds: &DaemonSet, desired: i32) -> Result<Option<(i32, i32)>, PlanError> {
    let strategy = ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    if strategy.and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") != "RollingUpdate" {
        return Ok(None);
    }
    let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
    let surge = rolling.and_then(|r| r.max_surge.clone()).unwrap_or(IntOrString::Int(0));
    let unavailable = rolling.and_then(|r| r.max_unavailable.clone()).unwrap_or(IntOrString::Int(1));
    let surge = scaled_value(&surge, desired, true).map_err(PlanError::Strategy)?;
    let unavailable = scaled_value(&unavailable, desired, true).map_err(PlanError::Strategy)?;
    if desired > 0 && surge == 0 && unavailable == 0 {
        return Ok(Some((0, 1)));
    }
    Ok(Some((surge, unavailable)))
}

/// One node's view: whether the daemon belongs there and the pods it has.
struct NodeState {
    should_run: bool,
    should_continue: bool,
    /// Daemon pods on the node, oldest first (terminating ones included).
    pods: Vec<Arc<Pod>>,
}

impl NodeState {
    fn live(&self) -> impl Iterator<Item = &Arc<Pod>> {
        self.pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none())
    }
}

/// Plans one reconcile. `may_manage` is false while earlier creations or
/// deletions are not yet visible in the cache, or the DaemonSet is being
/// deleted: then only the status is computed.
pub fn plan(ds: &DaemonSet, nodes: &[Arc<Node>], namespace_pods: &[Arc<Pod>], now: Timestamp, may_manage: bool) -> Result<Plan, PlanError> {
    let spec = ds.spec.as_ref().ok_or(PlanError::NoSpec)?;
    let selector = Selector::from_label_selector(&spec.selector)?;
    let uid = ds.metadata.uid.as_deref().unwrap_or_default();
    let deleting = ds.metadata.deletion_timestamp.is_some();
    let template = daemon_template(ds)?;
    let hash = template.metadata.as_ref().and_then(|m| m.labels.as_ref()).and_then(revision_hash).unwrap_or_default().to_string();
    let daemon_pod = PodInfo::new(Arc::new(Pod {
        metadata: template.metadata.clone().unwrap_or_default(),
        spec: template.spec.clone(),
        status: None,
    }));
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let is_updated = |pod: &Pod| revision_hash(pods::labels(&pod.metadata)) == Some(hash.as_str());
    let is_available = |pod: &Pod| pods::is_available(pod, min_ready, now);

    let mut plan = Plan::default();
    let mut by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
    for pod in namespace_pods {
        let matches = selector.matches(pods::labels(&pod.metadata));
        let ours = match pods::controller_of(&pod.metadata) {
            Some(owner) if owner.uid == uid => {
                if !matches && !deleting {
                    plan.release.push(pod.clone());
                }
                matches
            }
            Some(_) => false,
            None if matches && !deleting && pod.metadata.deletion_timestamp.is_none() => {
                plan.adopt.push(pod.clone());
                true
            }
            None => false,
        };
        if ours && !matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded")) {
            by_node.entry(target_node(pod).unwrap_or_default()).or_default().push(pod.clone());
        }
    }

    let mut states: Vec<(String, NodeState)> = nodes
        .iter()
        .map(|node| {
            let name = node.metadata.name.clone().unwrap_or_default();
            let (should_run, should_continue) = should_run(&daemon_pod, node);
            let mut pods = by_node.remove(&name).unwrap_or_default();
            pods.sort_by(oldest_first);
            (name, NodeState { should_run, should_continue, pods })
        })
        .collect();
    states.sort_by(|a, b| a.0.cmp(&b.0));
    // Pods whose node is gone (or that name none) have nowhere to run.
    let stranded: Vec<Arc<Pod>> = by_node.into_values().flatten().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();

    plan.status = status(ds, &states, &is_updated, &is_available);
    if min_ready > 0 && Some(plan.status.number_ready) > plan.status.number_available {
        plan.recheck_after_seconds = Some(min_ready);
    }
    plan.template = template;
    if !may_manage || deleting {
        return Ok(plan);
    }

    let bounds = rolling_bounds(ds, plan.status.desired_number_scheduled)?;
    let surge = bounds.is_some_and(|(surge, _)| surge > 0);
    manage(&mut plan, &states, surge, &is_updated, &is_available);
    plan.delete.extend(stranded);
    let managed = !plan.create_on.is_empty() || !plan.delete.is_empty();
    if let (Some((max_surge, max_unavailable)), false) = (bounds, managed) {
        if max_surge > 0 {
            roll_with_surge(&mut plan, &states, max_surge, &is_updated, &is_available);
        } else {
            roll(&mut plan, &states, max_unavailable, &is_updated, &is_available);
        }
    }
    Ok(plan)
}

/// Kubernetes' `podsShouldBeOnNode`: a pod where one belongs, none where none
/// does, failed pods replaced, and duplicates removed (the oldest stays; during
/// a surge the oldest updated pod and, until it is available, the oldest old one).
fn manage(plan: &mut Plan, states: &[(String, NodeState)], surge: bool, is_updated: &dyn Fn(&Pod) -> bool, is_available: &dyn Fn(&Pod) -> bool) {
    for (name, state) in states {
        if state.should_run && state.pods.is_empty() {
            plan.create_on.push(name.clone());
            continue;
        }
        if !state.should_continue {
            plan.delete.extend(state.live().cloned());
            continue;
        }
        let (failed, running): (Vec<&Arc<Pod>>, Vec<&Arc<Pod>>) = state.live().partition(|p| is_failed(p));
        plan.delete.extend(failed.into_iter().cloned());
        if running.len() <= 1 {
            continue;
        }
        let keep: Vec<&Arc<Pod>> = if surge {
            let newest_kept = running.iter().find(|p| is_updated(p)).copied();
            let old_kept = running.iter().find(|p| !is_updated(p)).copied();
            match newest_kept {
                Some(new) if is_available(new) => vec![new],
                Some(new) => [Some(new), old_kept].into_iter().flatten().collect(),
                None => old_kept.into_iter().collect(),
            }
        } else {
            vec![running[0]]
        };
        plan.delete.extend(running.into_iter().filter(|p| !keep.iter().any(|k| Arc::ptr_eq(k, p))).cloned());
    }
}

/// A node's live daemon pods as (updated, old).
type UpdatedAndOld<'a> = (Option<&'a Arc<Pod>>, Option<&'a Arc<Pod>>);

/// The one live pod of a node, split into (updated, old); `None` if the node
/// has several (the manage pass sorts those out first).
fn single_pod<'a>(state: &'a NodeState, is_updated: &dyn Fn(&Pod) -> bool) -> Option<UpdatedAndOld<'a>> {
    let mut new = None;
    let mut old = None;
    for pod in state.live() {
        let slot = if is_updated(pod) { &mut new } else { &mut old };
        if slot.is_some() {
            return None;
        }
        *slot = Some(pod);
    }
    Some((new, old))
}

/// Rolling update without surge: old pods go while fewer than `maxUnavailable`
/// nodes lack an available daemon; unavailable old pods go at once.
fn roll(plan: &mut Plan, states: &[(String, NodeState)], max_unavailable: i32, is_updated: &dyn Fn(&Pod) -> bool, is_available: &dyn Fn(&Pod) -> bool) {
    let mut unavailable = 0;
    let mut replace_now = Vec::new();
    let mut candidates = Vec::new();
    for (_, state) in states.iter().filter(|(_, s)| s.should_run) {
        match single_pod(state, is_updated) {
            // Several pods, none, a terminating one, or old and new side by side:
            // the manage pass sorts these out; until then they count as unavailable.
            None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
            Some((Some(new), None)) => unavailable += i32::from(!is_available(new)),
            Some((None, Some(old))) if !is_available(old) => replace_now.push(old.clone()),
            Some((None, Some(old))) => candidates.push(old.clone()),
        }
    }
    let room = usize::try_from(max_unavailable - unavailable).unwrap_or(0).min(candidates.len());
    plan.delete.extend(replace_now);
    plan.delete.extend(candidates.into_iter().take(room));
}

/// Rolling update with surge (then `maxUnavailable` is 0): an updated pod starts
/// beside the old one on up to `maxSurge` nodes at once, and the old pod goes once
/// the updated one is available. Nodes whose old pod is unavailable get their
/// updated pod at once.
fn roll_with_surge(plan: &mut Plan, states: &[(String, NodeState)], max_surge: i32, is_updated: &dyn Fn(&Pod) -> bool, is_available: &dyn Fn(&Pod) -> bool) {
    let mut surging = 0;
    let mut candidates = Vec::new();
    for (name, state) in states.iter().filter(|(_, s)| s.should_run) {
        match single_pod(state, is_updated) {
            None | Some((None, None)) | Some((Some(_), None)) => {}
            Some((Some(new), Some(old))) if is_available(new) => plan.delete.push(old.clone()),
            Some((Some(_), Some(_))) => surging += 1,
            Some((None, Some(old))) if !is_available(old) => plan.create_on.push(name.clone()),
            Some((None, Some(_))) => candidates.push(name.clone()),
        }
    }
    let room = usize::try_from(max_surge - surging).unwrap_or(0).min(candidates.len());
    plan.create_on.extend(candidates.into_iter().take(room));
}

/// Kubernetes' `updateDaemonSetStatus`, per node from its oldest live pod.
fn status(ds: &DaemonSet, states: &[(String, NodeState)], is_updated: &dyn Fn(&Pod) -> bool, is_available: &dyn Fn(&Pod) -> bool) -> DaemonSetStatus {
    let mut status = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    let mut updated = 0;
    let mut available = 0;
    for (_, state) in states {
        let first = state.live().next();
        if !state.should_run {
            status.number_misscheduled += i32::from(first.is_some());
            continue;
        }
        status.desired_number_scheduled += 1;
        let Some(pod) = first else { continue };
        status.current_number_scheduled += 1;
        status.number_ready += i32::from(pods::is_ready(pod));
        available += i32::from(is_available(pod));
        updated += i32::from(state.live().any(|p| is_updated(p)));
    }
    status.number_available = Some(available);
    status.updated_number_scheduled = Some(updated);
    status.number_unavailable = Some(status.desired_number_scheduled - available);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::testing::*;
    use k8s_openapi::api::core::v1::{NodeSpec, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::json;

    fn daemonset(strategy: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": { "name": "agent", "namespace": "default", "uid": "uid-agent", "generation": 2 },
            "spec": {
                "selector": { "matchLabels": { "app": "agent" } },
                "template": {
                    "metadata": { "labels": { "app": "agent" } },
                    "spec": { "containers": [{ "name": "c", "image": "agent:1" }] }
                },
                "updateStrategy": strategy
            }
        }))
        .unwrap()
    }

    fn rolling(max_unavailable: i32, max_surge: i32) -> DaemonSet {
        daemonset(json!({ "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": max_unavailable, "maxSurge": max_surge } }))
    }

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Arc<Node> {
        Arc::new(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(taints.iter().map(|(key, effect)| Taint { key: (*key).into(), effect: (*effect).into(), ..Default::default() }).collect()),
                ..Default::default()
            }),
            status: None,
        })
    }

    fn hash_of(ds: &DaemonSet) -> String {
        daemon_template(ds).unwrap().metadata.unwrap().labels.unwrap()[CONTROLLER_REVISION_HASH].clone()
    }

    /// A daemon pod of `ds` running and ready on `node`, at revision `hash`.
    fn daemon(name: &str, node: &str, hash: &str, ready: bool) -> Arc<Pod> {
        let pod = owned_by(pod(name, &[("app", "agent"), (CONTROLLER_REVISION_HASH, hash)]), "DaemonSet", "agent");
        let mut pod = running_ready(pod, node, Timestamp::UNIX_EPOCH);
        if !ready {
            pod.status.as_mut().unwrap().conditions = None;
        }
        Arc::new(pod)
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
        pods.iter().map(|p| p.metadata.name.as_deref().unwrap()).collect()
    }

    #[test]
    fn every_eligible_node_gets_one_pod() {
        let nodes = vec![node("a", &[], &[]), node("b", &[], &[]), node("c", &[], &[])];
        let ds = rolling(1, 0);
        let pods = vec![daemon("on-a", "a", &hash_of(&ds), true)];
        let plan = plan(&ds, &nodes, &pods, at(10), true).unwrap();
        assert_eq!(plan.create_on, ["b", "c"]);
        assert!(plan.delete.is_empty());
        assert_eq!(plan.status.desired_number_scheduled, 3);
        assert_eq!(plan.status.current_number_scheduled, 1);
        assert_eq!(plan.status.number_ready, 1);
        assert_eq!(plan.status.updated_number_scheduled, Some(1));
        assert_eq!(plan.status.observed_generation, Some(2));
    }

    #[test]
    fn selectors_affinity_and_taints_decide_eligibility() {
        let mut ds = rolling(1, 0);
        ds.spec.as_mut().unwrap().template.spec.as_mut().unwrap().node_selector = Some([("disk".to_string(), "ssd".to_string())].into());
        let template = daemon_template(&ds).unwrap();
        let daemon_pod = PodInfo::new(Arc::new(Pod { metadata: template.metadata.unwrap(), spec: template.spec, status: None }));
        assert_eq!(should_run(&daemon_pod, &node("ssd", &[("disk", "ssd")], &[])), (true, true));
        assert_eq!(should_run(&daemon_pod, &node("hdd", &[("disk", "hdd")], &[])), (false, false));
        let tainted = node("gpu", &[("disk", "ssd")], &[("gpu", "NoSchedule")]);
        assert_eq!(should_run(&daemon_pod, &tainted), (false, true), "NoSchedule keeps new pods off, not running ones");
        let evicting = node("x", &[("disk", "ssd")], &[("dedicated", "NoExecute")]);
        assert_eq!(should_run(&daemon_pod, &evicting), (false, false));
        let cordoned = node("y", &[("disk", "ssd")], &[("node.kubernetes.io/unschedulable", "NoSchedule"), ("node.kubernetes.io/unreachable", "NoExecute")]);
        assert_eq!(should_run(&daemon_pod, &cordoned), (true, true), "daemons tolerate cordoned and unreachable nodes");
    }

    #[test]
    fn pods_leave_nodes_that_evict_them_and_nodes_that_are_gone() {
        let ds = rolling(1, 0);
        let hash = hash_of(&ds);
        let nodes = vec![node("a", &[], &[("dedicated", "NoExecute")]), node("b", &[], &[("gpu", "NoSchedule")])];
        let pods = vec![daemon("on-a", "a", &hash, true), daemon("on-b", "b", &hash, true), daemon("on-gone", "gone", &hash, true)];
        let plan = plan(&ds, &nodes, &pods, at(10), true).unwrap();
        assert_eq!(names(&plan.delete), ["on-a", "on-gone"]);
        assert!(plan.create_on.is_empty());
        assert_eq!(plan.status.number_misscheduled, 2);
        assert_eq!(plan.status.desired_number_scheduled, 0);
    }

    #[test]
    fn duplicates_and_failed_pods_go_and_the_oldest_stays() {
        let ds = rolling(1, 0);
        let hash = hash_of(&ds);
        let mut newer = (*daemon("newer", "a", &hash, true)).clone();
        newer.metadata.creation_timestamp = Some(client::time::now());
        let mut failed = (*daemon("failed", "b", &hash, false)).clone();
        failed.status.as_mut().unwrap().phase = Some("Failed".into());
        let pods = vec![Arc::new(newer), daemon("older", "a", &hash, true), Arc::new(failed)];
        let plan = plan(&ds, &[node("a", &[], &[]), node("b", &[], &[])], &pods, at(10), true).unwrap();
        assert_eq!(names(&plan.delete), ["newer", "failed"]);
    }

    #[test]
    fn a_rolling_update_replaces_at_most_max_unavailable_pods() {
        let ds = rolling(2, 0);
        let nodes: Vec<_> = ["a", "b", "c", "d", "e"].iter().map(|n| node(n, &[], &[])).collect();
        let old: Vec<_> = ["a", "b", "c", "d", "e"].iter().map(|n| daemon(&format!("old-{n}"), n, "old", true)).collect();
        let plan1 = plan(&ds, &nodes, &old, at(10), true).unwrap();
        assert_eq!(names(&plan1.delete), ["old-a", "old-b"]);
        assert_eq!(plan1.status.updated_number_scheduled, Some(0));

        // a's new pod is not ready yet and b's pod is gone being replaced: no room.
        let mut pods = vec![daemon("new-a", "a", &hash_of(&ds), false)];
        pods.extend(old[2..].iter().cloned());
        let plan2 = plan(&ds, &nodes, &pods, at(10), true).unwrap();
        assert_eq!(plan2.create_on, ["b"]);
        assert!(plan2.delete.is_empty(), "a pod was created: the update waits for the next pass");
        pods.push(daemon("new-b", "b", &hash_of(&ds), false));
        let plan3 = plan(&ds, &nodes, &pods, at(10), true).unwrap();
        assert!(plan3.delete.is_empty() && plan3.create_on.is_empty(), "two unavailable already");

        // An unavailable old pod is replaced regardless.
        let mut broken = old.clone();
        broken[4] = daemon("old-e", "e", "old", false);
        let plan4 = plan(&ds, &nodes, &broken, at(10), true).unwrap();
        assert_eq!(names(&plan4.delete), ["old-e", "old-a", "old-b"]);
    }

    #[test]
    fn a_surge_starts_the_new_pod_before_the_old_one_goes() {
        let ds = daemonset(json!({ "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 0, "maxSurge": 1 } }));
        let nodes = vec![node("a", &[], &[]), node("b", &[], &[])];
        let old = vec![daemon("old-a", "a", "old", true), daemon("old-b", "b", "old", true)];
        let plan1 = plan(&ds, &nodes, &old, at(10), true).unwrap();
        assert_eq!(plan1.create_on, ["a"]);
        assert!(plan1.delete.is_empty());

        let mut pods = old.clone();
        pods.push(daemon("new-a", "a", &hash_of(&ds), false));
        let waiting = plan(&ds, &nodes, &pods, at(10), true).unwrap();
        assert!(waiting.create_on.is_empty() && waiting.delete.is_empty());

        pods[2] = daemon("new-a", "a", &hash_of(&ds), true);
        let swap = plan(&ds, &nodes, &pods, at(10), true).unwrap();
        assert_eq!(names(&swap.delete), ["old-a"]);
    }

    #[test]
    fn on_delete_leaves_old_pods_alone() {
        let ds = daemonset(json!({ "type": "OnDelete" }));
        let pods = vec![daemon("old-a", "a", "old", true)];
        let plan = plan(&ds, &[node("a", &[], &[])], &pods, at(10), true).unwrap();
        assert!(plan.delete.is_empty() && plan.create_on.is_empty());
        assert_eq!(plan.status.updated_number_scheduled, Some(0));
    }

    #[test]
    fn daemon_pods_tolerate_node_problems_and_name_their_node() {
        let template = daemon_template(&rolling(1, 0)).unwrap();
        let tolerated: Vec<_> = template.spec.as_ref().unwrap().tolerations.iter().flatten().map(|t| t.key.clone().unwrap()).collect();
        assert!(tolerated.contains(&"node.kubernetes.io/not-ready".to_string()));
        assert!(tolerated.contains(&"node.kubernetes.io/unschedulable".to_string()));
        let pod = super::super::for_node(&Pod { metadata: Default::default(), spec: template.spec, status: None }, "n7");
        assert_eq!(target_node(&pod).as_deref(), Some("n7"));
    }
}
