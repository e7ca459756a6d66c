//! The ReplicaSet controller: keeps `replicas` pods matching the selector.

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, ResourceExt};
use serde_json::json;

use client::expectations::Expectations;
use client::informer::Change;
use client::queue::{run_workers, Requeue, WorkQueue};
use api::selector::Selector;
use client::{is_not_found, object_key, split_key};

use crate::pods::{self, controller_reference};
use crate::{Error, Result, SharedContext};

pub struct ReplicaSetController {
    ctx: SharedContext,
    queue: WorkQueue,
    expectations: Arc<Expectations>,
}

impl ReplicaSetController {
    /// Registers the controller's handlers on the shared informers.
    pub fn new(ctx: SharedContext) -> Arc<Self> {
        let controller = Arc::new(Self { ctx: ctx.clone(), queue: WorkQueue::new(), expectations: Arc::default() });
        let queue = controller.queue.clone();
        ctx.informers.replicasets.on_change(move |change| {
            let rs = change.object();
            queue.add(object_key(rs.metadata.namespace.as_deref(), &rs.name_any()));
        });
        let (queue, expectations, replicasets) =
            (controller.queue.clone(), controller.expectations.clone(), ctx.informers.replicasets.clone());
        ctx.informers.pods.on_change(move |change| {
            let pod = change.object();
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            match pods::controller_of(&pod.metadata) {
                Some(owner) if owner.kind == "ReplicaSet" => {
                    let key = object_key(Some(&namespace), &owner.name);
                    observe(&expectations, &key, change);
                    queue.add(key);
                }
                Some(_) => {}
                None => {
                    // An orphan: every ReplicaSet that selects it may adopt it.
                    for rs in replicasets.list_namespace(&namespace) {
                        let selects = rs.spec.as_ref().is_some_and(|s| {
                            Selector::from_label_selector(&s.selector).is_ok_and(|s| s.matches(pods::labels(&pod.metadata)))
                        });
                        if selects {
                            queue.add(object_key(Some(&namespace), &rs.name_any()));
                        }
                    }
                }
            }
        });
        controller
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        let controller = self.clone();
        run_workers("replicaset", self.queue.clone(), workers, move |key| {
            let controller = controller.clone();
            async move { controller.reconcile(&key).await }
        })
        .await;
    }

    async fn reconcile(&self, key: &str) -> Result<Requeue> {
        let Some(rs) = self.ctx.informers.replicasets.get_by_key(key) else {
            self.expectations.remove(key);
            return Ok(Requeue::No);
        };
        let (namespace, name) = split_key(key);
        let namespace = namespace.unwrap_or_default();
        let namespace_pods = self.ctx.informers.pods.list_namespace(namespace);
        let now = client::time::now().0;
        let plan = plan::plan(&rs, &namespace_pods, now, self.expectations.satisfied(key))
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let pod_api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), namespace);

        let owner = controller_reference("apps/v1", "ReplicaSet", &rs.metadata);
        for pod in &plan.adopt {
            set_controller(&pod_api, pod, Some(&owner)).await?;
        }
        for pod in &plan.release {
            set_controller(&pod_api, pod, None).await?;
        }
        if plan.create > 0 {
            self.create_pods(key, &rs, &pod_api, plan.create, owner).await?;
        }
        if !plan.delete.is_empty() {
            self.delete_pods(key, &pod_api, &plan.delete).await?;
        }
        if rs.status.as_ref() != Some(&plan.status) {
            let api: Api<ReplicaSet> = Api::namespaced(self.ctx.client.clone(), namespace);
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

    /// Creates `count` pods in batches of 1, 2, 4, ... (Kubernetes' slow start), so
    /// that a template the API rejects fails once, not `count` times.
    async fn create_pods(&self, key: &str, rs: &ReplicaSet, api: &Api<Pod>, count: usize, owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference) -> Result<()> {
        let spec = rs.spec.as_ref().ok_or_else(|| Error::Invalid("ReplicaSet without spec".into()))?;
        let template = spec.template.as_ref().ok_or_else(|| Error::Invalid("ReplicaSet without template".into()))?;
        let namespace = rs.namespace().unwrap_or_default();
        let pod = pods::pod_from_template(template, &namespace, &rs.name_any(), owner);
        self.expectations.expect(key, count, []);
        let params = PostParams::default();
        let mut remaining = count;
        let mut batch = 1;
        while remaining > 0 {
            let size = batch.min(remaining);
            let results = join_all((0..size).map(|_| api.create(&params, &pod))).await;
            remaining -= size;
            let failure = results.into_iter().filter_map(|r| r.err()).inspect(|_| self.expectations.creation_observed(key)).next();
            if let Some(error) = failure {
                // The creations that will not happen are not waited for either.
                (0..remaining).for_each(|_| self.expectations.creation_observed(key));
                self.ctx.recorder.emit(
                    client::events::reference_to(rs),
                    client::events::EventType::Warning,
                    "FailedCreate",
                    format!("Error creating: {error}"),
                );
                return Err(error.into());
            }
            batch *= 2;
        }
        self.ctx.recorder.emit(
            client::events::reference_to(rs),
            client::events::EventType::Normal,
            "SuccessfulCreate",
            format!("Created {count} pod(s)"),
        );
        Ok(())
    }

    async fn delete_pods(&self, key: &str, api: &Api<Pod>, victims: &[Arc<Pod>]) -> Result<()> {
        self.expectations.expect(key, 0, victims.iter().filter_map(|p| p.uid()));
        let deletions = victims.iter().map(|pod| async move {
            let params = DeleteParams {
                preconditions: Some(Preconditions { uid: pod.uid(), resource_version: None }),
                ..Default::default()
            };
            let result = api.delete(&pod.name_any(), &params).await;
            if result.is_err() {
                self.expectations.deletion_observed(key, &pod.uid().unwrap_or_default());
            }
            result
        });
        for result in join_all(deletions).await {
            match result {
                Err(error) if !is_not_found(&error) => return Err(error.into()),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Marks what the informer saw against what the controller expects.
fn observe(expectations: &Expectations, key: &str, change: &Change<Pod>) {
    match change {
        Change::Applied { old: None, new } if new.metadata.deletion_timestamp.is_none() => expectations.creation_observed(key),
        Change::Applied { old: Some(old), new } if old.metadata.deletion_timestamp.is_none() && new.metadata.deletion_timestamp.is_some() => {
            expectations.deletion_observed(key, &new.uid().unwrap_or_default());
        }
        Change::Deleted(old) => expectations.deletion_observed(key, &old.uid().unwrap_or_default()),
        Change::Applied { .. } => {}
    }
}

/// Adopts (`Some`) or releases (`None`) `pod`, keeping its other owner references.
async fn set_controller(api: &Api<Pod>, pod: &Pod, owner: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>) -> Result<()> {
    let mut references: Vec<_> = pod.owner_references().iter().filter(|r| r.controller != Some(true)).cloned().collect();
    references.extend(owner.cloned());
    let patch = Patch::Merge(json!({ "metadata": { "ownerReferences": references, "uid": pod.uid() } }));
    match api.patch(&pod.name_any(), &PatchParams::default(), &patch).await {
        Err(error) if !is_not_found(&error) => Err(error.into()),
        _ => Ok(()),
    }
}
