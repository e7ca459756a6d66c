//! The node lifecycle controller: a node whose agent stopped renewing its Lease
//! for the grace period turns `Ready=Unknown`, its pods turn `Ready=False` at
//! once (so they leave Services' endpoints), and it gets the
//! `node.kubernetes.io/unreachable:NoExecute` taint (a node reporting not ready
//! gets `not-ready`); the taint goes when the node is Ready again. Its taint
//! manager evicts pods from NoExecute-tainted nodes once their tolerations run out.
//!
//! The grace period counts from the controller's own start too, as Kubernetes'
//! does from its first look at a node: a control plane that was down for a
//! while (restarted, or resumed with its cluster) gives every agent the time
//! to renew its Lease before it judges the node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, ResourceExt};
use serde_json::json;

use client::events::{reference_to, EventType};
use client::is_not_found;
use scheduler::plugins::taint_toleration::toleration_matches;

use crate::context::NODE_LEASE_NAMESPACE;
use crate::{Result, SharedContext};

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";

#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a node may go without renewing its Lease (Kubernetes: 40 s).
    pub grace_period: Duration,
    /// How long pods stay on an unreachable or not-ready node when they do not say
    /// (what Kubernetes' DefaultTolerationSeconds admission sets: 300 s).
    pub default_toleration_seconds: i64,
    /// How often nodes are checked.
    pub monitor_period: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self { grace_period: Duration::from_secs(40), default_toleration_seconds: 300, monitor_period: Duration::from_secs(1) }
    }
}

/// What the node's condition and taints should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Ready,
    /// The agent says the node is not ready.
    NotReady,
    /// The agent has not been heard from within the grace period.
    Unreachable,
    /// A new node whose agent has not reported yet, within the grace period
    /// since it was registered: left alone, as Kubernetes does.
    Pending,
}

fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

/// Judges a node from its Ready condition and its Lease; `watching_since`
/// is when this controller started looking.
pub fn health(node: &Node, lease: Option<&Lease>, now: Timestamp, watching_since: Timestamp, grace: Duration) -> Health {
    let condition = ready_condition(node);
    let heartbeat = [
        lease.and_then(|l| l.spec.as_ref()).and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
        condition.and_then(|c| c.last_heartbeat_time.as_ref()).map(|t| t.0),
        node.metadata.creation_timestamp.as_ref().map(|t| t.0),
        Some(watching_since),
    ]
    .into_iter()
    .flatten()
    .max();
    let silent_for = heartbeat.map_or(f64::INFINITY, |at| client::time::seconds_between(&at, &now));
    if silent_for > grace.as_secs_f64() {
        return Health::Unreachable;
    }
    match condition.map(|c| c.status.as_str()) {
        Some("True") => Health::Ready,
        Some("False") => Health::NotReady,
        None => Health::Pending,
        // Unknown set by this controller, with a fresh Lease: the agent is back
        // but has not reported yet; keep the taint until it does.
        Some(_) => Health::Unreachable,
    }
}

fn taints(node: &Node) -> Vec<Taint> {
    node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default()
}

/// The node's taints as they should be for `health` (others kept as they are).
pub fn desired_taints(node: &Node, health: Health, now: Timestamp) -> Vec<Taint> {
    let wanted = match health {
        Health::Ready => None,
        Health::NotReady => Some(NOT_READY),
        Health::Unreachable => Some(UNREACHABLE),
        Health::Pending => return taints(node),
    };
    let mut result: Vec<Taint> = taints(node)
        .into_iter()
        .filter(|t| !(t.effect == "NoExecute" && (t.key == UNREACHABLE || t.key == NOT_READY) && Some(t.key.as_str()) != wanted))
        .collect();
    if let Some(key) = wanted {
        if !result.iter().any(|t| t.key == key && t.effect == "NoExecute") {
            result.push(Taint {
                key: key.into(),
                effect: "NoExecute".into(),
                time_added: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now)),
                value: None,
            });
        }
    }
    result
}

/// When a pod on a node with these taints must go: `None` if it tolerates all
/// NoExecute taints for ever, else the moment.
pub fn eviction_time(pod: &Pod, taints: &[Taint], default_toleration_seconds: i64) -> Option<Timestamp> {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
    let mut earliest: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let added = taint.time_added.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0);
        let matching: Vec<_> = tolerations.iter().filter(|t| toleration_matches(t, taint)).collect();
        let seconds = if matching.is_empty() {
            // Kubernetes' admission gives every pod 300 s for these two taints.
            if taint.key == UNREACHABLE || taint.key == NOT_READY { default_toleration_seconds } else { 0 }
        } else if matching.iter().any(|t| t.toleration_seconds.is_none()) {
            continue;
        } else {
            matching.iter().filter_map(|t| t.toleration_seconds).min().unwrap_or(0).max(0)
        };
        let at = added.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(seconds)).unwrap_or(added);
        earliest = Some(earliest.map_or(at, |e| e.min(at)));
    }
    earliest
}

/// Whether a pod on an unreachable node still claims to be Ready, and must be
/// marked not ready (as Kubernetes' `MarkPodsNotReady` does).
pub fn needs_not_ready_mark(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A copy of an object's conditions with `change` applied to each.
fn changed<C: Clone>(conditions: Option<&Vec<C>>, change: impl FnMut(&mut C)) -> Vec<C> {
    let mut conditions = conditions.cloned().unwrap_or_default();
    conditions.iter_mut().for_each(change);
    conditions
}

pub struct NodeLifecycleController {
    ctx: SharedContext,
    settings: Settings,
    started: Timestamp,
}

impl NodeLifecycleController {
    pub fn new(ctx: SharedContext, settings: Settings) -> Arc<Self> {
        Arc::new(Self { ctx, settings, started: client::time::now().0 })
    }

    /// Checks every node each monitor period (the Lease, not a watch event, is
    /// what goes missing when an agent dies, so this polls the caches).
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.settings.monitor_period);
        loop {
            tick.tick().await;
            if let Err(error) = self.monitor().await {
                tracing::debug!(%error, "node monitoring failed; next period retries");
            }
        }
    }

    async fn monitor(&self) -> Result<()> {
        let now = client::time::now().0;
        let nodes = self.ctx.informers.nodes.list();
        let mut tainted: HashMap<String, Vec<Taint>> = HashMap::new();
        let mut unreachable = Vec::new();
        for node in &nodes {
            let name = node.name_any();
            let lease = self.ctx.informers.node_leases.get(Some(NODE_LEASE_NAMESPACE), &name);
            let health = health(node, lease.as_deref(), now, self.started, self.settings.grace_period);
            if health == Health::Unreachable {
                if ready_condition(node).is_none_or(|c| c.status != "Unknown") {
                    self.mark_unknown(node).await?;
                }
                unreachable.push(name.clone());
            }
            let wanted = desired_taints(node, health, now);
            if wanted != taints(node) {
                let api: Api<Node> = Api::all(self.ctx.client.clone());
                let patch = json!({ "spec": { "taints": wanted } });
                api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
            }
            let no_execute: Vec<Taint> = wanted.into_iter().filter(|t| t.effect == "NoExecute").collect();
            if !no_execute.is_empty() {
                tainted.insert(name, no_execute);
            }
        }
        if !unreachable.is_empty() {
            self.mark_pods_not_ready(&unreachable).await?;
        }
        if !tainted.is_empty() {
            self.evict(&tainted, now).await?;
        }
        Ok(())
    }

    /// Turns `Ready` False on the pods of nodes nobody hears from: their agent
    /// cannot say so itself, and Services must stop sending them traffic now,
    /// not when the pods are evicted minutes later.
    async fn mark_pods_not_ready(&self, nodes: &[String]) -> Result<()> {
        for pod in self.ctx.informers.pods.list() {
            let on_unreachable = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some_and(|n| nodes.contains(n));
            if !on_unreachable || !needs_not_ready_mark(&pod) {
                continue;
            }
            let now = client::time::now();
            let conditions = changed(pod.status.as_ref().and_then(|s| s.conditions.as_ref()), |c| {
                if c.type_ == "Ready" && c.status == "True" {
                    c.status = "False".into();
                    c.last_transition_time = Some(now.clone());
                }
            });
            let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), pod.metadata.namespace.as_deref().unwrap_or_default());
            let patch = json!({ "metadata": { "resourceVersion": pod.resource_version() }, "status": { "conditions": conditions } });
            match api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
                Err(error) if !is_not_found(&error) && !client::is_conflict(&error) => return Err(error.into()),
                Err(_) => {}
                Ok(_) => self.ctx.recorder.emit(reference_to(pod.as_ref()), EventType::Warning, "NodeNotReady", "Node is not ready".into()),
            }
        }
        Ok(())
    }

    async fn mark_unknown(&self, node: &Node) -> Result<()> {
        let now = client::time::now();
        let conditions: Vec<NodeCondition> = changed(node.status.as_ref().and_then(|s| s.conditions.as_ref()), |c| {
            if c.status != "Unknown" {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(now.clone());
            }
        });
        let api: Api<Node> = Api::all(self.ctx.client.clone());
        api.patch_status(&node.name_any(), &PatchParams::default(), &Patch::Merge(json!({ "status": { "conditions": conditions } })))
            .await?;
        self.ctx.recorder.emit(reference_to(node), EventType::Normal, "NodeNotReady", format!("Node {} status is now: NodeNotReady", node.name_any()));
        Ok(())
    }

    /// The taint manager: deletes pods whose tolerations of their node's NoExecute
    /// taints have run out.
    async fn evict(&self, tainted: &HashMap<String, Vec<Taint>>, now: Timestamp) -> Result<()> {
        for pod in self.ctx.informers.pods.list() {
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()) else { continue };
            let Some(taints) = tainted.get(node) else { continue };
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let Some(at) = eviction_time(&pod, taints, self.settings.default_toleration_seconds) else { continue };
            if at > now {
                continue;
            }
            let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), pod.metadata.namespace.as_deref().unwrap_or_default());
            let params = DeleteParams { preconditions: Some(Preconditions { uid: pod.uid(), resource_version: None }), ..Default::default() };
            match api.delete(&pod.name_any(), &params).await {
                Err(error) if !is_not_found(&error) && !client::is_conflict(&error) => return Err(error.into()),
                _ => {
                    let message = format!("Marking for deletion Pod {}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
                    self.ctx.recorder.emit(reference_to(pod.as_ref()), EventType::Normal, "TaintManagerEviction", message);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::{NodeStatus, PodSpec, Toleration};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn node(ready: &str, heartbeat: i64) -> Node {
        Node {
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    last_heartbeat_time: Some(Time(at(heartbeat))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn lease(renewed: i64) -> Lease {
        Lease { spec: Some(LeaseSpec { renew_time: Some(MicroTime(at(renewed))), ..Default::default() }), ..Default::default() }
    }

    const GRACE: Duration = Duration::from_secs(40);

    #[test]
    fn a_node_whose_lease_is_stale_is_unreachable() {
        assert_eq!(health(&node("True", 0), Some(&lease(100)), at(130), at(0), GRACE), Health::Ready);
        assert_eq!(health(&node("True", 0), Some(&lease(100)), at(141), at(0), GRACE), Health::Unreachable);
        assert_eq!(health(&node("False", 0), Some(&lease(100)), at(110), at(0), GRACE), Health::NotReady);
    }

    #[test]
    fn a_new_node_is_left_alone_until_its_agent_reports_or_the_grace_period_ends() {
        let mut new = Node::default();
        new.metadata.creation_timestamp = Some(Time(at(100)));
        assert_eq!(health(&new, None, at(110), at(0), GRACE), Health::Pending);
        assert!(desired_taints(&new, Health::Pending, at(110)).is_empty(), "no taint while it starts");
        assert_eq!(health(&new, None, at(141), at(0), GRACE), Health::Unreachable);
    }

    #[test]
    fn a_controller_that_just_started_gives_every_node_the_grace_period() {
        // The control plane was down from 100 to 200: the Lease is old, but
        // the agent has not had its chance to renew it yet.
        assert_eq!(health(&node("True", 0), Some(&lease(100)), at(210), at(200), GRACE), Health::Ready);
        assert_eq!(health(&node("True", 0), Some(&lease(100)), at(241), at(200), GRACE), Health::Unreachable);
    }

    #[test]
    fn only_ready_pods_that_stay_are_marked_not_ready() {
        let pod = |ready: &str, deleting: bool| {
            let mut pod: Pod = serde_json::from_value(json!({"status": {"conditions": [{"type": "Ready", "status": ready}]}})).unwrap();
            if deleting {
                pod.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(5)));
            }
            pod
        };
        assert!(needs_not_ready_mark(&pod("True", false)));
        assert!(!needs_not_ready_mark(&pod("False", false)));
        assert!(!needs_not_ready_mark(&pod("True", true)));
        assert!(!needs_not_ready_mark(&Pod::default()));
    }

    #[test]
    fn taints_follow_health() {
        let unreachable = desired_taints(&node("Unknown", 0), Health::Unreachable, at(50));
        assert_eq!(unreachable.len(), 1);
        assert_eq!((unreachable[0].key.as_str(), unreachable[0].effect.as_str()), (UNREACHABLE, "NoExecute"));
        let mut tainted = node("True", 0);
        tainted.spec = Some(k8s_openapi::api::core::v1::NodeSpec { taints: Some(unreachable), ..Default::default() });
        assert!(desired_taints(&tainted, Health::Ready, at(60)).is_empty(), "the taint goes when the node is back");
    }

    #[test]
    fn eviction_waits_for_the_toleration() {
        let taint = Taint { key: UNREACHABLE.into(), effect: "NoExecute".into(), time_added: Some(Time(at(100))), value: None };
        let plain = Pod { spec: Some(PodSpec::default()), ..Default::default() };
        assert_eq!(eviction_time(&plain, &[taint.clone()], 300), Some(at(400)));
        let tolerate = |seconds: Option<i64>| Pod {
            spec: Some(PodSpec {
                tolerations: Some(vec![Toleration {
                    key: Some(UNREACHABLE.into()),
                    operator: Some("Exists".into()),
                    effect: Some("NoExecute".into()),
                    toleration_seconds: seconds,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(eviction_time(&tolerate(Some(5)), &[taint.clone()], 300), Some(at(105)));
        assert_eq!(eviction_time(&tolerate(None), &[taint], 300), None, "tolerated for ever");
    }
}
