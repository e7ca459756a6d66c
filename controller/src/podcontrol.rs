//! Creating, deleting, adopting and releasing pods for a controller that keeps
//! expectations (Kubernetes' `PodControl` and `slowStartBatch`), shared by the
//! ReplicaSet and DaemonSet controllers.

use std::future::Future;
use std::sync::Arc;

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, ResourceExt};
use serde_json::json;

use client::expectations::Expectations;
use client::informer::{Change, Informer};
use client::object_key;
use client::queue::WorkQueue;
use client::is_not_found;

use crate::{pods, Result};

/// Marks what the informer saw against what the controller `key` expects.
pub fn observe(expectations: &Expectations, key: &str, change: &Change<Pod>) {
    match change {
        Change::Applied { old: None, new } if new.metadata.deletion_timestamp.is_none() => expectations.creation_observed(key),
        Change::Applied { old: Some(old), new } if old.metadata.deletion_timestamp.is_none() && new.metadata.deletion_timestamp.is_some() => {
            expectations.deletion_observed(key, &new.uid().unwrap_or_default());
        }
        Change::Deleted(old) => expectations.deletion_observed(key, &old.uid().unwrap_or_default()),
        Change::Applied { .. } => {}
    }
}

/// Queues pod changes for the controller of `kind`: a pod it controls wakes its
/// owner (whose expectations see the change); an orphan wakes the objects
/// `adopters` names, which then look whether to adopt it.
pub fn route_pod_changes(
    pods: &Informer<Pod>,
    kind: &'static str,
    queue: WorkQueue,
    expectations: Arc<Expectations>,
    adopters: impl Fn(&Pod, &str) -> Vec<String> + Send + Sync + 'static,
) {
    pods.on_change(move |change| {
        let pod = change.object();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        match pods::controller_of(&pod.metadata) {
            Some(owner) if owner.kind == kind => {
                let key = object_key(Some(&namespace), &owner.name);
                observe(&expectations, &key, change);
                queue.add(key);
            }
            Some(_) => {}
            None => adopters(pod, &namespace).into_iter().for_each(|key| queue.add(key)),
        }
    });
}

/// Runs `create(0..count)` in batches of 1, 2, 4, ... (Kubernetes' slow start), so
/// that a template the API rejects fails once, not `count` times. Every creation
/// that fails or is never tried is marked observed for `key`, so the controller
/// does not wait for it. Returns the first error.
pub async fn create_in_slow_start<F, Fut>(expectations: &Expectations, key: &str, count: usize, create: F) -> Result<(), kube::Error>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<Pod, kube::Error>>,
{
    expectations.expect(key, count, []);
    let mut done = 0;
    let mut batch = 1;
    while done < count {
        let size = batch.min(count - done);
        let results = join_all((done..done + size).map(&create)).await;
        done += size;
        let failure = results.into_iter().filter_map(|r| r.err()).inspect(|_| expectations.creation_observed(key)).next();
        if let Some(error) = failure {
            (done..count).for_each(|_| expectations.creation_observed(key));
            return Err(error);
        }
        batch *= 2;
    }
    Ok(())
}

/// Deletes `victims` (each only if it is still the same pod), expecting their
/// deletions for `key`. A pod already gone is not an error.
pub async fn delete_pods(expectations: &Expectations, key: &str, api: &Api<Pod>, victims: &[Arc<Pod>]) -> Result<()> {
    expectations.expect(key, 0, victims.iter().filter_map(|p| p.uid()));
    let deletions = victims.iter().map(|pod| async move {
        let params = DeleteParams {
            preconditions: Some(Preconditions { uid: pod.uid(), resource_version: None }),
            ..Default::default()
        };
        let result = api.delete(&pod.name_any(), &params).await;
        if result.is_err() {
            expectations.deletion_observed(key, &pod.uid().unwrap_or_default());
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

/// Adopts (`Some`) or releases (`None`) `pod`, keeping its other owner references.
pub async fn set_controller(api: &Api<Pod>, pod: &Pod, owner: Option<&OwnerReference>) -> Result<()> {
    let mut references: Vec<_> = pod.owner_references().iter().filter(|r| r.controller != Some(true)).cloned().collect();
    references.extend(owner.cloned());
    let patch = Patch::Merge(json!({ "metadata": { "ownerReferences": references, "uid": pod.uid() } }));
    match api.patch(&pod.name_any(), &PatchParams::default(), &patch).await {
        Err(error) if !is_not_found(&error) => Err(error.into()),
        _ => Ok(()),
    }
}
