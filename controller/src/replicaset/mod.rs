//! The ReplicaSet controller: keeps `replicas` pods matching the selector.

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use client::expectations::Expectations;
use client::queue::{run_workers, Requeue, WorkQueue};
use api::selector::Selector;
use client::{is_not_found, object_key, split_key};

use crate::pods::{self, controller_reference};
use crate::podcontrol;
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
        let replicasets = ctx.informers.replicasets.clone();
        // An orphan: every ReplicaSet that selects it may adopt it.
        let adopters = move |pod: &Pod, namespace: &str| {
            let labels = pods::labels(&pod.metadata);
            replicasets
                .list_namespace(namespace)
                .iter()
                .filter(|rs| rs.spec.as_ref().is_some_and(|s| Selector::from_label_selector(&s.selector).is_ok_and(|s| s.matches(labels))))
                .map(|rs| object_key(Some(namespace), &rs.name_any()))
                .collect()
        };
        podcontrol::route_pod_changes(&ctx.informers.pods, "ReplicaSet", controller.queue.clone(), controller.expectations.clone(), adopters);
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
            podcontrol::set_controller(&pod_api, pod, Some(&owner)).await?;
        }
        for pod in &plan.release {
            podcontrol::set_controller(&pod_api, pod, None).await?;
        }
        if plan.create > 0 {
            self.create_pods(key, &rs, &pod_api, plan.create, owner).await?;
        }
        if !plan.delete.is_empty() {
            podcontrol::delete_pods(&self.expectations, key, &pod_api, &plan.delete).await?;
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

    async fn create_pods(&self, key: &str, rs: &ReplicaSet, api: &Api<Pod>, count: usize, owner: OwnerReference) -> Result<()> {
        let spec = rs.spec.as_ref().ok_or_else(|| Error::Invalid("ReplicaSet without spec".into()))?;
        let template = spec.template.as_ref().ok_or_else(|| Error::Invalid("ReplicaSet without template".into()))?;
        let namespace = rs.namespace().unwrap_or_default();
        let pod = pods::pod_from_template(template, &namespace, &rs.name_any(), owner);
        let params = PostParams::default();
        let created = podcontrol::create_in_slow_start(&self.expectations, key, count, |_| api.create(&params, &pod)).await;
        if let Err(error) = created {
            self.ctx.recorder.emit(
                client::events::reference_to(rs),
                client::events::EventType::Warning,
                "FailedCreate",
                format!("Error creating: {error}"),
            );
            return Err(error.into());
        }
        self.ctx.recorder.emit(
            client::events::reference_to(rs),
            client::events::EventType::Normal,
            "SuccessfulCreate",
            format!("Created {count} pod(s)"),
        );
        Ok(())
    }
}
