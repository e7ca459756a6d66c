//! The Deployment controller: a ReplicaSet per pod template, rolled out by the
//! Deployment's strategy.

pub mod hash;
pub mod plan;
pub mod util;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, ResourceExt};
use serde_json::json;

use client::events::{reference_to, EventType};
use client::informer::Change;
use client::queue::{run_workers, Requeue, WorkQueue};
use api::selector::Selector;
use client::{is_conflict, is_not_found, object_key, split_key};

use crate::pods;
use crate::{Error, Result, SharedContext};

pub struct DeploymentController {
    ctx: SharedContext,
    queue: WorkQueue,
}

impl DeploymentController {
    pub fn new(ctx: SharedContext) -> Arc<Self> {
        let controller = Arc::new(Self { ctx: ctx.clone(), queue: WorkQueue::new() });
        let queue = controller.queue.clone();
        ctx.informers.deployments.on_change(move |change| {
            let d = change.object();
            queue.add(object_key(d.metadata.namespace.as_deref(), &d.name_any()));
        });
        let (queue, deployments) = (controller.queue.clone(), ctx.informers.deployments.clone());
        ctx.informers.replicasets.on_change(move |change| {
            let rs = change.object();
            for key in owning_deployments(&deployments, &rs.metadata) {
                queue.add(key);
            }
        });
        // A Recreate rollout waits for the old pods to be gone.
        let (queue, replicasets, deployments) =
            (controller.queue.clone(), ctx.informers.replicasets.clone(), ctx.informers.deployments.clone());
        ctx.informers.pods.on_change(move |change| {
            let Change::Deleted(pod) = change else { return };
            let Some(owner) = pods::controller_of(&pod.metadata).filter(|o| o.kind == "ReplicaSet") else { return };
            let Some(rs) = replicasets.get(pod.metadata.namespace.as_deref(), &owner.name) else { return };
            for key in owning_deployments(&deployments, &rs.metadata) {
                queue.add(key);
            }
        });
        controller
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        let controller = self.clone();
        run_workers("deployment", self.queue.clone(), workers, move |key| {
            let controller = controller.clone();
            async move { controller.reconcile(&key).await }
        })
        .await;
    }

    async fn reconcile(&self, key: &str) -> Result<Requeue> {
        let Some(d) = self.ctx.informers.deployments.get_by_key(key) else { return Ok(Requeue::No) };
        let (namespace, name) = split_key(key);
        let namespace = namespace.unwrap_or_default();
        let rss = self.ctx.informers.replicasets.list_namespace(namespace);
        let namespace_pods = self.ctx.informers.pods.list_namespace(namespace);
        let plan = plan::plan(&d, &rss, &namespace_pods, client::time::now().0).map_err(|e| Error::Invalid(e.to_string()))?;

        let rs_api: Api<ReplicaSet> = Api::namespaced(self.ctx.client.clone(), namespace);
        let d_api: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), namespace);
        for rs in plan.adopt.iter().chain(&plan.release) {
            let patch = Patch::Merge(json!({ "metadata": { "ownerReferences": rs.owner_references(), "uid": rs.uid() } }));
            ignore_not_found(rs_api.patch(&rs.name_any(), &PatchParams::default(), &patch).await)?;
        }
        if let Some(rs) = &plan.create {
            self.create_replicaset(&d, &rs_api, &d_api, rs).await?;
        }
        for (rs, before) in &plan.update {
            rs_api.replace(&rs.name_any(), &PostParams::default(), rs).await?;
            let after = util::rs_replicas(rs);
            if after != *before {
                let direction = if after > *before { "up" } else { "down" };
                let message = format!("Scaled {direction} replica set {} from {before} to {after}", rs.name_any());
                self.ctx.recorder.emit(reference_to(&*d), EventType::Normal, "ScalingReplicaSet", message);
            }
        }
        for rs in &plan.delete {
            let params = DeleteParams { preconditions: Some(Preconditions { uid: rs.uid(), resource_version: None }), ..Default::default() };
            ignore_not_found(rs_api.delete(&rs.name_any(), &params).await.map(|_| ()))?;
        }
        if let Some(annotations) = &plan.annotations {
            let patch = Patch::Merge(json!({ "metadata": { "annotations": annotations } }));
            ignore_not_found(d_api.patch(name, &PatchParams::default(), &patch).await)?;
        }
        if let Some(status) = &plan.status {
            ignore_not_found(d_api.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await)?;
        }
        Ok(plan.requeue_after.map_or(Requeue::No, Requeue::After))
    }

    /// Creates the new ReplicaSet. A ReplicaSet of that name that is already ours
    /// with the same template is the cache lagging; anything else is a hash
    /// collision, which bumps `collisionCount` so the next try picks another name.
    async fn create_replicaset(&self, d: &Deployment, rs_api: &Api<ReplicaSet>, d_api: &Api<Deployment>, rs: &ReplicaSet) -> Result<()> {
        match rs_api.create(&PostParams::default(), rs).await {
            Ok(created) => {
                let message = format!("Scaled up replica set {} from 0 to {}", created.name_any(), util::rs_replicas(&created));
                self.ctx.recorder.emit(reference_to(d), EventType::Normal, "ScalingReplicaSet", message);
                Ok(())
            }
            Err(error) if is_conflict(&error) => {
                let existing = rs_api.get(&rs.name_any()).await?;
                let ours = pods::controller_of(&existing.metadata).is_some_and(|o| Some(&o.uid) == d.metadata.uid.as_ref());
                let same = existing.spec.as_ref().and_then(|s| s.template.as_ref()) == rs.spec.as_ref().and_then(|s| s.template.as_ref());
                if ours && same {
                    return Ok(());
                }
                let count = d.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0) + 1;
                let patch = Patch::Merge(json!({ "status": { "collisionCount": count } }));
                d_api.patch_status(&d.name_any(), &PatchParams::default(), &patch).await?;
                Err(Error::Invalid(format!("ReplicaSet name {} collides; collisionCount is now {count}", rs.name_any())))
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// Keys of the Deployments that own `rs`, or that select it if it is an orphan.
fn owning_deployments(
    deployments: &client::informer::Informer<Deployment>,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Vec<String> {
    let namespace = meta.namespace.as_deref();
    match pods::controller_of(meta) {
        Some(owner) if owner.kind == "Deployment" => vec![object_key(namespace, &owner.name)],
        Some(_) => Vec::new(),
        None => deployments
            .list_namespace(namespace.unwrap_or_default())
            .into_iter()
            .filter(|d| {
                d.spec.as_ref().is_some_and(|s| {
                    Selector::from_label_selector(&s.selector).is_ok_and(|sel| !sel.is_empty() && sel.matches(pods::labels(meta)))
                })
            })
            .map(|d| object_key(namespace, &d.name_any()))
            .collect(),
    }
}

fn ignore_not_found<T>(result: std::result::Result<T, kube::Error>) -> Result<()> {
    match result {
        Err(error) if !is_not_found(&error) => Err(error.into()),
        _ => Ok(()),
    }
}
