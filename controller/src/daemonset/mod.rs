//! The DaemonSet controller: one pod per eligible node, rolled to a new template
//! by the DaemonSet's update strategy.
//!
//! Daemon pods are not bound by this controller: as in Kubernetes since 1.12,
//! each pod carries a required node affinity on `metadata.name` (a `matchFields`
//! term) and the default scheduler binds it to that node.
//!
//! Revisions: r8s serves no ControllerRevision objects, so the revision of a
//! template is its hash alone, in the pods' `controller-revision-hash` label (the
//! label Kubernetes uses); there is no DaemonSet rollout history or undo.

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodTemplateSpec};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use client::events::{reference_to, EventType};
use client::expectations::Expectations;
use client::informer::Change;
use client::queue::{run_workers, Requeue, WorkQueue};
use client::{is_not_found, object_key, split_key};

use crate::podcontrol;
use crate::pods::{self, controller_reference};
use crate::{Error, Result, SharedContext};

pub struct DaemonSetController {
    ctx: SharedContext,
    queue: WorkQueue,
    expectations: Arc<Expectations>,
}

/// What about a node decides where daemons run; heartbeats change none of it.
fn placement_view(node: &Node) -> impl PartialEq + '_ {
    (node.metadata.labels.as_ref(), node.spec.as_ref())
}

impl DaemonSetController {
    /// Registers the controller's handlers on the shared informers.
    pub fn new(ctx: SharedContext) -> Arc<Self> {
        let controller = Arc::new(Self { ctx: ctx.clone(), queue: WorkQueue::new(), expectations: Arc::default() });
        let queue = controller.queue.clone();
        ctx.informers.daemonsets.on_change(move |change| {
            let ds = change.object();
            queue.add(object_key(ds.metadata.namespace.as_deref(), &ds.name_any()));
        });
        let daemonsets = ctx.informers.daemonsets.clone();
        // An orphan: every DaemonSet in its namespace looks whether to adopt it.
        let adopters = move |_: &Pod, namespace: &str| {
            daemonsets.list_namespace(namespace).iter().map(|ds| object_key(Some(namespace), &ds.name_any())).collect()
        };
        podcontrol::route_pod_changes(&ctx.informers.pods, "DaemonSet", controller.queue.clone(), controller.expectations.clone(), adopters);
        let (queue, daemonsets) = (controller.queue.clone(), ctx.informers.daemonsets.clone());
        ctx.informers.nodes.on_change(move |change| {
            let moved = match change {
                Change::Applied { old: Some(old), new } => placement_view(old) != placement_view(new),
                Change::Applied { old: None, .. } | Change::Deleted(_) => true,
            };
            if moved {
                for ds in daemonsets.list() {
                    queue.add(object_key(ds.metadata.namespace.as_deref(), &ds.name_any()));
                }
            }
        });
        controller
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        let controller = self.clone();
        run_workers("daemonset", self.queue.clone(), workers, move |key| {
            let controller = controller.clone();
            async move { controller.reconcile(&key).await }
        })
        .await;
    }

    async fn reconcile(&self, key: &str) -> Result<Requeue> {
        let Some(ds) = self.ctx.informers.daemonsets.get_by_key(key) else {
            self.expectations.remove(key);
            return Ok(Requeue::No);
        };
        let (namespace, name) = split_key(key);
        let namespace = namespace.unwrap_or_default();
        let nodes = self.ctx.informers.nodes.list();
        let namespace_pods = self.ctx.informers.pods.list_namespace(namespace);
        let now = client::time::now().0;
        let plan = plan::plan(&ds, &nodes, &namespace_pods, now, self.expectations.satisfied(key))
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let pod_api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), namespace);

        let owner = controller_reference("apps/v1", "DaemonSet", &ds.metadata);
        for pod in &plan.adopt {
            podcontrol::set_controller(&pod_api, pod, Some(&owner)).await?;
        }
        for pod in &plan.release {
            podcontrol::set_controller(&pod_api, pod, None).await?;
        }
        if !plan.delete.is_empty() {
            podcontrol::delete_pods(&self.expectations, key, &pod_api, &plan.delete).await?;
            for pod in &plan.delete {
                let message = format!("Deleted pod: {}", pod.name_any());
                self.ctx.recorder.emit(reference_to(&*ds), EventType::Normal, "SuccessfulDelete", message);
            }
        }
        if !plan.create_on.is_empty() {
            self.create_pods(key, &ds, &pod_api, &plan.template, &plan.create_on).await?;
        }
        if ds.status.as_ref() != Some(&plan.status) {
            let api: Api<DaemonSet> = Api::namespaced(self.ctx.client.clone(), namespace);
            let patch = Patch::Merge(json!({ "status": plan.status }));
            match api.patch_status(name, &PatchParams::default(), &patch).await {
                Err(error) if is_not_found(&error) => return Ok(Requeue::No),
                other => other?,
            };
        }
        Ok(match plan.recheck_after_seconds {
            Some(seconds) => Requeue::After(Duration::from_secs(seconds.unsigned_abs().into())),
            None => Requeue::No,
        })
    }

    async fn create_pods(&self, key: &str, ds: &DaemonSet, api: &Api<Pod>, template: &PodTemplateSpec, nodes: &[String]) -> Result<()> {
        let namespace = ds.namespace().unwrap_or_default();
        let owner = controller_reference("apps/v1", "DaemonSet", &ds.metadata);
        let pod = pods::pod_from_template(template, &namespace, &ds.name_any(), owner);
        let params = PostParams::default();
        let created = podcontrol::create_in_slow_start(&self.expectations, key, nodes.len(), |index| {
            let pod = for_node(&pod, &nodes[index]);
            let api = api.clone();
            let params = params.clone();
            async move {
                let created = api.create(&params, &pod).await?;
                self.ctx.recorder.emit(reference_to(ds), EventType::Normal, "SuccessfulCreate", format!("Created pod: {}", created.name_any()));
                Ok(created)
            }
        })
        .await;
        if let Err(error) = created {
            self.ctx.recorder.emit(reference_to(ds), EventType::Warning, "FailedCreate", format!("Error creating: {error}"));
            return Err(error.into());
        }
        Ok(())
    }
}

/// The daemon pod for `node`: its required node affinity replaced by one term
/// naming the node (Kubernetes' `ReplaceDaemonSetPodNodeNameNodeAffinity`); the
/// controller has already checked that the node matches the original terms.
pub fn for_node(pod: &Pod, node: &str) -> Pod {
    let mut pod = pod.clone();
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.to_string()]),
        }]),
        match_expressions: None,
    };
    let spec = pod.spec.get_or_insert_with(Default::default);
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector { node_selector_terms: vec![term] });
    pod
}
