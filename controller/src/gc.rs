//! The garbage collector: deletes objects whose owners are all gone, and carries
//! out the two deletion modes that wait for it: Foreground (the owner keeps the
//! `foregroundDeletion` finalizer until its dependents are gone) and Orphan (the
//! `orphan` finalizer stays until the dependents no longer point at the owner).
//! Background deletion needs nothing more than the first rule.
//!
//! It keeps a graph of owner references (uid → object, owner uid → dependents)
//! built from the shared informers of the kinds it watches.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::core::{ApiResource, DynamicObject};
use kube::{Api, Resource};
use serde_json::json;

use client::informer::{Change, Informer};
use client::queue::{run_workers, Requeue, WorkQueue};
use client::{is_conflict, is_not_found};

use crate::{Result, SharedContext};

pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
pub const ORPHAN_FINALIZER: &str = "orphan";

/// An object in the graph.
#[derive(Debug, Clone)]
struct Vertex {
    resource: ApiResource,
    namespace: Option<String>,
    name: String,
    owners: Vec<OwnerReference>,
    finalizers: Vec<String>,
    deleting: bool,
}

#[derive(Default)]
struct Graph {
    vertices: HashMap<String, Vertex>,
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    fn upsert(&mut self, uid: &str, vertex: Vertex) {
        self.remove(uid);
        for owner in &vertex.owners {
            self.dependents.entry(owner.uid.clone()).or_default().insert(uid.to_string());
        }
        self.vertices.insert(uid.to_string(), vertex);
    }

    fn remove(&mut self, uid: &str) -> Option<Vertex> {
        let vertex = self.vertices.remove(uid)?;
        for owner in &vertex.owners {
            if let Some(set) = self.dependents.get_mut(&owner.uid) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(&owner.uid);
                }
            }
        }
        Some(vertex)
    }

    fn dependents_of(&self, uid: &str) -> Vec<(String, Vertex)> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| Some((d.clone(), self.vertices.get(d)?.clone())))
            .collect()
    }
}

/// What the collector must do about one object, decided from the graph alone.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Nothing,
    /// Every owner is gone: delete the object.
    Delete,
    /// Some owners are gone: drop the references to them.
    DropOwners(Vec<String>),
    /// Owner being deleted in the foreground: delete these dependents first.
    DeleteDependents(Vec<String>),
    /// Foreground or orphan work is done: remove this finalizer.
    RemoveFinalizer(&'static str),
    /// Orphan deletion: take the owner reference off these dependents.
    Orphan(Vec<String>),
}

fn decide(graph: &Graph, uid: &str, known_kinds: &HashSet<String>) -> Verdict {
    let Some(vertex) = graph.vertices.get(uid) else { return Verdict::Nothing };
    let has = |f: &str| vertex.finalizers.iter().any(|x| x == f);
    if vertex.deleting {
        let dependents = graph.dependents_of(uid);
        if has(ORPHAN_FINALIZER) {
            return if dependents.is_empty() {
                Verdict::RemoveFinalizer(ORPHAN_FINALIZER)
            } else {
                Verdict::Orphan(dependents.into_iter().map(|(d, _)| d).collect())
            };
        }
        if has(FOREGROUND_FINALIZER) {
            let alive: Vec<String> = dependents.iter().filter(|(_, v)| !v.deleting).map(|(d, _)| d.clone()).collect();
            return match (dependents.is_empty(), alive.is_empty()) {
                (true, _) => Verdict::RemoveFinalizer(FOREGROUND_FINALIZER),
                (false, false) => Verdict::DeleteDependents(alive),
                (false, true) => Verdict::Nothing,
            };
        }
        return Verdict::Nothing;
    }
    // Owners of kinds the collector does not watch cannot be checked: keep them.
    let checkable: Vec<&OwnerReference> = vertex.owners.iter().filter(|o| known_kinds.contains(&o.kind)).collect();
    let gone: Vec<String> = checkable.iter().filter(|o| !graph.vertices.contains_key(&o.uid)).map(|o| o.uid.clone()).collect();
    if gone.is_empty() {
        Verdict::Nothing
    } else if gone.len() == vertex.owners.len() {
        Verdict::Delete
    } else {
        Verdict::DropOwners(gone)
    }
}

pub struct GarbageCollector {
    ctx: SharedContext,
    graph: Arc<Mutex<Graph>>,
    queue: WorkQueue,
    known_kinds: HashSet<String>,
}

impl GarbageCollector {
    pub fn new(ctx: SharedContext) -> Arc<Self> {
        let known_kinds = ["Pod", "ReplicaSet", "Deployment", "DaemonSet"].map(String::from).into();
        let gc = Arc::new(Self { ctx: ctx.clone(), graph: Arc::default(), queue: WorkQueue::new(), known_kinds });
        gc.watch(&ctx.informers.pods);
        gc.watch(&ctx.informers.replicasets);
        gc.watch(&ctx.informers.deployments);
        gc.watch(&ctx.informers.daemonsets);
        gc
    }

    fn watch<K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static>(
        &self,
        informer: &Informer<K>,
    ) {
        let (graph, queue) = (self.graph.clone(), self.queue.clone());
        informer.on_change(move |change| {
            let meta: &ObjectMeta = change.object().meta();
            let Some(uid) = meta.uid.clone() else { return };
            let mut graph = graph.lock().unwrap_or_else(|p| p.into_inner());
            match change {
                Change::Applied { .. } => {
                    let vertex = Vertex {
                        resource: ApiResource::erase::<K>(&()),
                        namespace: meta.namespace.clone(),
                        name: meta.name.clone().unwrap_or_default(),
                        owners: meta.owner_references.clone().unwrap_or_default(),
                        finalizers: meta.finalizers.clone().unwrap_or_default(),
                        deleting: meta.deletion_timestamp.is_some(),
                    };
                    // Owners waiting on their dependents look again.
                    vertex.owners.iter().for_each(|o| queue.add(o.uid.clone()));
                    graph.upsert(&uid, vertex);
                    queue.add(uid);
                }
                Change::Deleted(_) => {
                    if let Some(vertex) = graph.remove(&uid) {
                        vertex.owners.iter().for_each(|o| queue.add(o.uid.clone()));
                    }
                    for (dependent, _) in graph.dependents_of(&uid) {
                        queue.add(dependent);
                    }
                }
            }
        });
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        let gc = self.clone();
        run_workers("garbage-collector", self.queue.clone(), workers, move |uid| {
            let gc = gc.clone();
            async move { gc.reconcile(&uid).await }
        })
        .await;
    }

    fn api(&self, vertex: &Vertex) -> Api<DynamicObject> {
        match &vertex.namespace {
            Some(ns) => Api::namespaced_with(self.ctx.client.clone(), ns, &vertex.resource),
            None => Api::all_with(self.ctx.client.clone(), &vertex.resource),
        }
    }

    fn vertex(&self, uid: &str) -> Option<Vertex> {
        self.graph.lock().unwrap_or_else(|p| p.into_inner()).vertices.get(uid).cloned()
    }

    async fn reconcile(&self, uid: &str) -> Result<Requeue> {
        let verdict = decide(&self.graph.lock().unwrap_or_else(|p| p.into_inner()), uid, &self.known_kinds);
        let Some(vertex) = self.vertex(uid) else { return Ok(Requeue::No) };
        let api = self.api(&vertex);
        match verdict {
            Verdict::Nothing => {}
            Verdict::Delete => {
                if self.owners_really_gone(&vertex).await? {
                    let params = DeleteParams {
                        propagation_policy: Some(PropagationPolicy::Background),
                        preconditions: Some(Preconditions { uid: Some(uid.to_string()), resource_version: None }),
                        ..Default::default()
                    };
                    ignore_gone(api.delete(&vertex.name, &params).await.map(|_| ()))?;
                }
            }
            Verdict::DropOwners(gone) => {
                let kept: Vec<&OwnerReference> = vertex.owners.iter().filter(|o| !gone.contains(&o.uid)).collect();
                let patch = json!({ "metadata": { "ownerReferences": kept, "uid": uid } });
                ignore_gone(api.patch(&vertex.name, &PatchParams::default(), &Patch::Merge(patch)).await.map(|_| ()))?;
            }
            Verdict::DeleteDependents(dependents) => {
                for dependent in dependents.iter().filter_map(|d| Some((d, self.vertex(d)?))) {
                    let (dependent_uid, dependent) = dependent;
                    let params = DeleteParams {
                        propagation_policy: Some(PropagationPolicy::Foreground),
                        preconditions: Some(Preconditions { uid: Some(dependent_uid.clone()), resource_version: None }),
                        ..Default::default()
                    };
                    ignore_gone(self.api(&dependent).delete(&dependent.name, &params).await.map(|_| ()))?;
                }
            }
            Verdict::Orphan(dependents) => {
                for (dependent_uid, dependent) in dependents.iter().filter_map(|d| Some((d, self.vertex(d)?))) {
                    let kept: Vec<&OwnerReference> = dependent.owners.iter().filter(|o| o.uid != uid).collect();
                    let patch = json!({ "metadata": { "ownerReferences": kept, "uid": dependent_uid } });
                    ignore_gone(self.api(&dependent).patch(&dependent.name, &PatchParams::default(), &Patch::Merge(patch)).await.map(|_| ()))?;
                }
            }
            Verdict::RemoveFinalizer(finalizer) => {
                let kept: Vec<&String> = vertex.finalizers.iter().filter(|f| *f != finalizer).collect();
                let patch = json!({ "metadata": { "finalizers": kept, "uid": uid } });
                ignore_gone(api.patch(&vertex.name, &PatchParams::default(), &Patch::Merge(patch)).await.map(|_| ()))?;
            }
        }
        Ok(Requeue::No)
    }

    /// The cache may lag behind an owner that was just created: ask the API
    /// before deleting anything.
    async fn owners_really_gone(&self, vertex: &Vertex) -> Result<bool> {
        for owner in &vertex.owners {
            let Some(resource) = self.resource_of(&owner.kind) else { return Ok(false) };
            let api: Api<DynamicObject> = match &vertex.namespace {
                Some(ns) => Api::namespaced_with(self.ctx.client.clone(), ns, &resource),
                None => Api::all_with(self.ctx.client.clone(), &resource),
            };
            match api.get(&owner.name).await {
                Ok(found) if found.metadata.uid.as_deref() == Some(owner.uid.as_str()) => return Ok(false),
                Ok(_) => {}
                Err(error) if is_not_found(&error) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(true)
    }

    fn resource_of(&self, kind: &str) -> Option<ApiResource> {
        match kind {
            "Pod" => Some(ApiResource::erase::<Pod>(&())),
            "ReplicaSet" => Some(ApiResource::erase::<ReplicaSet>(&())),
            "Deployment" => Some(ApiResource::erase::<Deployment>(&())),
            "DaemonSet" => Some(ApiResource::erase::<DaemonSet>(&())),
            _ => None,
        }
    }
}

/// A 404 or a failed uid precondition both mean the object is already gone.
fn ignore_gone(result: std::result::Result<(), kube::Error>) -> Result<()> {
    match result {
        Err(error) if !is_not_found(&error) && !is_conflict(&error) => Err(error.into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(kind: &str, uid: &str) -> OwnerReference {
        OwnerReference { kind: kind.into(), uid: uid.into(), name: uid.into(), api_version: "apps/v1".into(), ..Default::default() }
    }

    fn vertex(owners: Vec<OwnerReference>, finalizers: &[&str], deleting: bool) -> Vertex {
        Vertex {
            resource: ApiResource::erase::<Pod>(&()),
            namespace: Some("default".into()),
            name: "x".into(),
            owners,
            finalizers: finalizers.iter().map(|f| f.to_string()).collect(),
            deleting,
        }
    }

    fn kinds() -> HashSet<String> {
        ["Pod", "ReplicaSet", "Deployment"].map(String::from).into()
    }

    #[test]
    fn objects_whose_owners_are_all_gone_are_deleted() {
        let mut graph = Graph::default();
        graph.upsert("pod", vertex(vec![reference("ReplicaSet", "rs")], &[], false));
        assert_eq!(decide(&graph, "pod", &kinds()), Verdict::Delete);
        graph.upsert("rs", vertex(vec![], &[], false));
        assert_eq!(decide(&graph, "pod", &kinds()), Verdict::Nothing);
    }

    #[test]
    fn a_gone_owner_among_living_ones_is_dropped_and_unknown_kinds_are_kept() {
        let mut graph = Graph::default();
        graph.upsert("rs", vertex(vec![], &[], false));
        graph.upsert("pod", vertex(vec![reference("ReplicaSet", "rs"), reference("ReplicaSet", "old"), reference("Widget", "w")], &[], false));
        assert_eq!(decide(&graph, "pod", &kinds()), Verdict::DropOwners(vec!["old".into()]));
    }

    #[test]
    fn foreground_deletion_waits_for_dependents() {
        let mut graph = Graph::default();
        graph.upsert("d", vertex(vec![], &[FOREGROUND_FINALIZER], true));
        graph.upsert("rs", vertex(vec![reference("Deployment", "d")], &[], false));
        assert_eq!(decide(&graph, "d", &kinds()), Verdict::DeleteDependents(vec!["rs".into()]));
        graph.upsert("rs", vertex(vec![reference("Deployment", "d")], &[FOREGROUND_FINALIZER], true));
        assert_eq!(decide(&graph, "d", &kinds()), Verdict::Nothing, "waits while the dependent goes");
        graph.remove("rs");
        assert_eq!(decide(&graph, "d", &kinds()), Verdict::RemoveFinalizer(FOREGROUND_FINALIZER));
    }

    #[test]
    fn orphan_deletion_frees_dependents_then_the_finalizer() {
        let mut graph = Graph::default();
        graph.upsert("rs", vertex(vec![], &[ORPHAN_FINALIZER], true));
        graph.upsert("pod", vertex(vec![reference("ReplicaSet", "rs")], &[], false));
        assert_eq!(decide(&graph, "rs", &kinds()), Verdict::Orphan(vec!["pod".into()]));
        graph.upsert("pod", vertex(vec![], &[], false));
        assert_eq!(decide(&graph, "rs", &kinds()), Verdict::RemoveFinalizer(ORPHAN_FINALIZER));
    }
}
