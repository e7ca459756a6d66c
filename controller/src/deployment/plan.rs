//! The Deployment reconcile as a pure function, following Kubernetes' deployment
//! controller (sync.go, rolling.go, recreate.go, progress.go): from a Deployment,
//! the ReplicaSets and pods of its namespace and the time, to the ReplicaSets to
//! create, scale, annotate and delete, and the Deployment's new status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::jiff::Timestamp;

use super::hash::pod_template_hash;
use super::util::*;
use crate::pods::{self, controller_reference};
use api::selector::Selector;

/// What one reconcile of a Deployment changes.
#[derive(Debug, Default)]
pub struct Plan {
    /// Orphan ReplicaSets to take (with the owner reference already added).
    pub adopt: Vec<ReplicaSet>,
    /// Owned ReplicaSets that stopped matching (owner reference already removed).
    pub release: Vec<ReplicaSet>,
    pub create: Option<ReplicaSet>,
    /// ReplicaSets to write back (scaled or annotated), with the replicas they had.
    pub update: Vec<(ReplicaSet, i32)>,
    pub delete: Vec<ReplicaSet>,
    /// New `metadata.annotations` for the Deployment (its revision).
    pub annotations: Option<BTreeMap<String, String>>,
    /// The new status, if it differs.
    pub status: Option<DeploymentStatus>,
    pub requeue_after: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("Deployment has no spec")]
    NoSpec,
    #[error(transparent)]
    Selector(#[from] api::selector::SelectorError),
    #[error("{0}")]
    Invalid(String),
}

/// The Deployment's ReplicaSets as the plan changes them.
struct Work<'a> {
    d: &'a Deployment,
    now: Timestamp,
    rss: Vec<ReplicaSet>,
    original_replicas: Vec<i32>,
    touched: BTreeSet<usize>,
    /// ReplicaSets beyond the revision history limit.
    doomed: BTreeSet<usize>,
    new: Option<usize>,
    created: bool,
    status: DeploymentStatus,
    annotations: Option<BTreeMap<String, String>>,
}

pub fn plan(d: &Deployment, namespace_rss: &[Arc<ReplicaSet>], namespace_pods: &[Arc<Pod>], now: Timestamp) -> Result<Plan, PlanError> {
    let spec = d.spec.as_ref().ok_or(PlanError::NoSpec)?;
    if !is_recreate(d) {
        fenceposts(d).map_err(PlanError::Invalid)?;
    }
    let selector = Selector::from_label_selector(&spec.selector)?;
    let mut plan = Plan::default();
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let deleting = d.metadata.deletion_timestamp.is_some();
    let mut rss = Vec::new();
    for rs in namespace_rss {
        let matches = !selector.is_empty() && selector.matches(pods::labels(&rs.metadata));
        match pods::controller_of(&rs.metadata) {
            Some(owner) if owner.uid == uid => {
                if matches || deleting {
                    rss.push((**rs).clone());
                } else {
                    let mut released = (**rs).clone();
                    if let Some(refs) = released.metadata.owner_references.as_mut() {
                        refs.retain(|r| r.uid != uid);
                    }
                    plan.release.push(released);
                }
            }
            None if matches && !deleting && rs.metadata.deletion_timestamp.is_none() => {
                let mut adopted = (**rs).clone();
                adopted
                    .metadata
                    .owner_references
                    .get_or_insert_with(Vec::new)
                    .push(controller_reference("apps/v1", "Deployment", &d.metadata));
                plan.adopt.push(adopted.clone());
                rss.push(adopted);
            }
            _ => {}
        }
    }
    // Oldest first: Kubernetes picks the oldest matching ReplicaSet as the new one.
    rss.sort_by_key(|rs| (rs.metadata.creation_timestamp.as_ref().map(|t| t.0), rs.metadata.name.clone()));

    let mut work = Work {
        d,
        now,
        original_replicas: rss.iter().map(rs_replicas).collect(),
        rss,
        touched: BTreeSet::new(),
        doomed: BTreeSet::new(),
        new: None,
        created: false,
        status: d.status.clone().unwrap_or_default(),
        annotations: None,
    };
    if deleting {
        work.sync_status();
    } else if spec.paused == Some(true) {
        work.paused_conditions();
        work.find_new_and_sync_revision(false)?;
        work.scale();
        work.cleanup();
        work.sync_status();
    } else {
        work.paused_conditions();
        work.find_new_and_sync_revision(false)?;
        if work.is_scaling_event() {
            work.scale();
            work.sync_status();
        } else if is_recreate(d) {
            work.rollout_recreate(namespace_pods)?;
        } else {
            work.rollout_rolling()?;
        }
    }
    Ok(work.finish(plan))
}

impl Work<'_> {
    fn old(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.rss.len()).filter(move |i| Some(*i) != self.new)
    }

    fn scale_to(&mut self, index: usize, target: i32) {
        let desired = replicas(self.d);
        let max = desired + max_surge(self.d);
        let rs = &mut self.rss[index];
        let resized = rs_replicas(rs) != target;
        rs.spec.get_or_insert_with(Default::default).replicas = Some(target);
        let annotated = set_replicas_annotations(rs, desired, max);
        if resized || annotated {
            self.touched.insert(index);
        }
    }

    /// Finds the ReplicaSet whose template is the Deployment's, gives it the next
    /// revision, and creates it if asked to and missing.
    fn find_new_and_sync_revision(&mut self, create: bool) -> Result<(), PlanError> {
        let template = self.template()?;
        self.new = self.rss.iter().position(|rs| template_without_hash(rs) == Some(template.clone()));
        let max_old_revision = self.old().map(|i| revision(&self.rss[i])).max().unwrap_or(0);
        let new_revision = (max_old_revision + 1).to_string();
        match self.new {
            Some(index) => {
                let rs = &mut self.rss[index];
                let mut changed = copy_annotations(self.d, rs);
                let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
                let current = annotations.get(REVISION).cloned().unwrap_or_default();
                if current.parse::<i64>().unwrap_or(0) < max_old_revision + 1 {
                    if !current.is_empty() {
                        let history = annotations.get(REVISION_HISTORY).map(|h| format!("{h},{current}")).unwrap_or(current);
                        annotations.insert(REVISION_HISTORY.into(), history);
                    }
                    annotations.insert(REVISION.into(), new_revision.clone());
                    changed = true;
                }
                let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
                let rs_spec = rs.spec.get_or_insert_with(Default::default);
                if rs_spec.min_ready_seconds != min_ready {
                    rs_spec.min_ready_seconds = min_ready;
                    changed = true;
                }
                if changed {
                    self.touched.insert(index);
                }
                let name = rs.metadata.name.clone().unwrap_or_default();
                if condition(&self.status, "Progressing").is_none() && progress_deadline(self.d).is_some() {
                    let message = format!("Found new replica set \"{name}\"");
                    set_condition(&mut self.status, new_condition("Progressing", "True", "FoundNewReplicaSet", message, self.now));
                }
            }
            None if create => self.create_new(template, new_revision)?,
            None => {}
        }
        self.set_deployment_revision();
        Ok(())
    }

    fn template(&self) -> Result<PodTemplateSpec, PlanError> {
        let mut template = self.d.spec.as_ref().ok_or(PlanError::NoSpec)?.template.clone();
        strip_hash(&mut template);
        Ok(template)
    }

    fn create_new(&mut self, template: PodTemplateSpec, revision: String) -> Result<(), PlanError> {
        let d = self.d;
        let spec = d.spec.as_ref().ok_or(PlanError::NoSpec)?;
        let hash = pod_template_hash(&template, self.status.collision_count);
        let name = format!("{}-{hash}", d.metadata.name.as_deref().unwrap_or_default());
        let mut template = template;
        template.metadata.get_or_insert_with(Default::default).labels.get_or_insert_with(BTreeMap::new).insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector: LabelSelector = spec.selector.clone();
        selector.match_labels.get_or_insert_with(BTreeMap::new).insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
        labels.insert(POD_TEMPLATE_HASH.into(), hash);
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: d.metadata.namespace.clone(),
                labels: Some(labels),
                annotations: Some(BTreeMap::from([(REVISION.to_string(), revision)])),
                owner_references: Some(vec![controller_reference("apps/v1", "Deployment", &d.metadata)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        copy_annotations(d, &mut rs);
        self.rss.push(rs);
        self.original_replicas.push(0);
        let index = self.rss.len() - 1;
        self.new = Some(index);
        self.created = true;
        let replicas = self.new_rs_replicas(index);
        self.scale_to(index, replicas);
        if progress_deadline(d).is_some() {
            let message = format!("Created new replica set \"{name}\"");
            set_condition(&mut self.status, new_condition("Progressing", "True", "NewReplicaSetCreated", message, self.now));
        }
        Ok(())
    }

    fn set_deployment_revision(&mut self) {
        let Some(index) = self.new else { return };
        let Some(revision) = self.rss[index].metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).cloned() else {
            return;
        };
        let mut annotations = self.d.metadata.annotations.clone().unwrap_or_default();
        if annotations.get(REVISION) != Some(&revision) {
            annotations.insert(REVISION.into(), revision);
            self.annotations = Some(annotations);
        }
    }

    /// Replicas the new ReplicaSet may have now (`NewRSNewReplicas`).
    fn new_rs_replicas(&self, new: usize) -> i32 {
        let desired = replicas(self.d);
        if is_recreate(self.d) {
            return desired;
        }
        let current = rs_replicas(&self.rss[new]);
        // Pods that exist count even where a ReplicaSet was already scaled down, so
        // the surge bound holds for pods, not only for specs.
        let pods: i32 = self.rss.iter().map(|rs| rs_replicas(rs).max(rs_status_replicas(rs))).sum();
        let max_total = desired + max_surge(self.d);
        if pods >= max_total {
            return current;
        }
        current + (max_total - pods).min(desired - current).max(0)
    }

    fn is_scaling_event(&self) -> bool {
        let desired = replicas(self.d);
        self.rss
            .iter()
            .filter(|rs| rs_replicas(rs) > 0)
            .filter_map(|rs| annotation_i32(rs, DESIRED_REPLICAS))
            .any(|annotated| annotated != desired)
    }

    /// Scales for a changed `replicas` (Kubernetes' `scale`, with proportional
    /// scaling across ReplicaSets during a rollout).
    fn scale(&mut self) {
        let desired = replicas(self.d);
        let active: Vec<usize> = (0..self.rss.len()).filter(|i| rs_replicas(&self.rss[*i]) > 0).collect();
        let target = match active.len() {
            0 => self.new.or_else(|| self.old().max_by_key(|i| self.rss[*i].metadata.creation_timestamp.as_ref().map(|t| t.0))),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(index) = target {
            self.scale_to(index, desired);
            return;
        }
        if self.new.is_some_and(|n| is_saturated(self.d, &self.rss[n])) {
            for old in self.old().collect::<Vec<_>>() {
                self.scale_to(old, 0);
            }
            return;
        }
        if is_recreate(self.d) {
            return;
        }
        let all: i32 = self.rss.iter().map(rs_replicas).sum();
        let allowed = if desired > 0 { desired + max_surge(self.d) } else { 0 };
        let to_add = allowed - all;
        let mut order = active;
        // Scale up the largest (newest on ties) first, scale down the smallest.
        order.sort_by_key(|i| {
            let rs = &self.rss[*i];
            let created = rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
            (std::cmp::Reverse(rs_replicas(rs)), std::cmp::Reverse(created))
        });
        if to_add < 0 {
            order.reverse();
        }
        let mut added = 0;
        let mut sizes = Vec::new();
        for &index in &order {
            let rs = &self.rss[index];
            let part = if to_add == 0 || to_add == added { 0 } else { self.proportion(rs, to_add, added) };
            sizes.push(rs_replicas(rs) + part);
            added += part;
        }
        if let Some(first) = sizes.first_mut() {
            *first = (*first + to_add - added).max(0);
        }
        for (index, size) in order.into_iter().zip(sizes) {
            self.scale_to(index, size);
        }
    }

    fn proportion(&self, rs: &ReplicaSet, to_add: i32, added: i32) -> i32 {
        let desired = replicas(self.d);
        let fraction = if desired == 0 {
            -rs_replicas(rs)
        } else {
            let deployment_max = desired + max_surge(self.d);
            let annotated = annotation_i32(rs, MAX_REPLICAS)
                .unwrap_or_else(|| self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0))
                .max(1);
            let size = f64::from(rs_replicas(rs)) * f64::from(deployment_max) / f64::from(annotated);
            size.round() as i32 - rs_replicas(rs)
        };
        let allowed = to_add - added;
        if to_add > 0 { fraction.min(allowed) } else { fraction.max(allowed) }
    }

    fn rollout_rolling(&mut self) -> Result<(), PlanError> {
        self.find_new_and_sync_revision(true)?;
        if self.reconcile_new() || self.reconcile_old() {
            self.sync_rollout_status();
            return Ok(());
        }
        if is_complete(self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup();
        }
        self.sync_rollout_status();
        Ok(())
    }

    fn reconcile_new(&mut self) -> bool {
        let Some(new) = self.new else { return false };
        let desired = replicas(self.d);
        let current = rs_replicas(&self.rss[new]);
        if current == desired {
            return false;
        }
        let target = if current > desired { desired } else { self.new_rs_replicas(new) };
        self.scale_to(new, target);
        target != current
    }

    fn reconcile_old(&mut self) -> bool {
        let old_pods: i32 = self.old().map(|i| rs_replicas(&self.rss[i])).sum();
        if old_pods == 0 {
            return false;
        }
        let desired = replicas(self.d);
        let all: i32 = self.rss.iter().map(rs_replicas).sum();
        let min_available = desired - max_unavailable(self.d);
        let new_unavailable = self.new.map_or(0, |n| rs_replicas(&self.rss[n]) - rs_available(&self.rss[n]));
        let max_scaled_down = all - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        // First the old pods that are not available anyway...
        let mut cleaned = 0;
        for index in self.old().collect::<Vec<_>>() {
            let rs = &self.rss[index];
            let (replicas, available) = (rs_replicas(rs), rs_available(rs));
            if cleaned >= max_scaled_down || replicas == 0 || replicas == available {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(replicas - available);
            self.scale_to(index, replicas - down);
            cleaned += down;
        }
        // ...then available ones, as far as minAvailable allows.
        let available: i32 = self.rss.iter().map(rs_available).sum();
        let mut budget = available - min_available;
        let mut scaled = cleaned;
        for index in self.old().collect::<Vec<_>>() {
            let replicas = rs_replicas(&self.rss[index]);
            if budget <= 0 {
                break;
            }
            if replicas == 0 {
                continue;
            }
            let down = replicas.min(budget);
            self.scale_to(index, replicas - down);
            budget -= down;
            scaled += down;
        }
        scaled > 0
    }

    fn rollout_recreate(&mut self, namespace_pods: &[Arc<Pod>]) -> Result<(), PlanError> {
        let mut scaled_down = false;
        for index in self.old().collect::<Vec<_>>() {
            if rs_replicas(&self.rss[index]) != 0 {
                self.scale_to(index, 0);
                scaled_down = true;
            }
        }
        if scaled_down || self.old_pods_running(namespace_pods) {
            self.sync_rollout_status();
            return Ok(());
        }
        if self.new.is_none() {
            self.find_new_and_sync_revision(true)?;
        }
        if let Some(new) = self.new {
            self.scale_to(new, replicas(self.d));
        }
        if is_complete(self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup();
        }
        self.sync_rollout_status();
        Ok(())
    }

    fn old_pods_running(&self, namespace_pods: &[Arc<Pod>]) -> bool {
        let old_uids: BTreeSet<String> = self.old().filter_map(|i| self.rss[i].metadata.uid.clone()).collect();
        if self.old().any(|i| rs_status_replicas(&self.rss[i]) > 0) {
            return true;
        }
        namespace_pods.iter().any(|pod| {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            pods::controller_of(&pod.metadata).is_some_and(|owner| old_uids.contains(&owner.uid))
                && !matches!(phase, Some("Succeeded") | Some("Failed"))
        })
    }

    /// Deletes the oldest fully scaled-down ReplicaSets beyond `revisionHistoryLimit`.
    fn cleanup(&mut self) {
        let limit = self.d.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT);
        let mut candidates: Vec<usize> = self.old().filter(|i| self.rss[*i].metadata.deletion_timestamp.is_none()).collect();
        let surplus = candidates.len().saturating_sub(usize::try_from(limit).unwrap_or(0));
        candidates.sort_by_key(|i| revision(&self.rss[*i]));
        let doomed = candidates
            .into_iter()
            .take(surplus)
            .filter(|i| {
                let rs = &self.rss[*i];
                let observed = rs.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
                rs_replicas(rs) == 0 && rs_status_replicas(rs) == 0 && rs.metadata.generation.unwrap_or(0) <= observed
            })
            .collect();
        self.doomed = doomed;
    }

    fn paused_conditions(&mut self) {
        if progress_deadline(self.d).is_none() {
            return;
        }
        let paused = self.d.spec.as_ref().and_then(|s| s.paused) == Some(true);
        let paused_condition = condition(&self.status, "Progressing").is_some_and(|c| c.reason.as_deref() == Some("DeploymentPaused"));
        if paused && !paused_condition {
            let condition = new_condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused".into(), self.now);
            set_condition(&mut self.status, condition);
        } else if !paused && paused_condition {
            let condition = new_condition("Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed".into(), self.now);
            set_condition(&mut self.status, condition);
        }
    }

    /// Counts (`calculateStatus`) and the Available condition.
    fn sync_status(&mut self) {
        let available: i32 = self.rss.iter().map(rs_available).sum();
        let total: i32 = self.rss.iter().map(rs_replicas).sum();
        self.status.observed_generation = self.d.metadata.generation;
        self.status.replicas = Some(self.rss.iter().map(rs_status_replicas).sum());
        self.status.updated_replicas = Some(self.new.map_or(0, |n| rs_status_replicas(&self.rss[n])));
        self.status.ready_replicas = Some(self.rss.iter().map(rs_ready).sum());
        self.status.available_replicas = Some(available);
        self.status.unavailable_replicas = Some((total - available).max(0));
        let condition = if available >= replicas(self.d) - max_unavailable(self.d) {
            new_condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.".into(), self.now)
        } else {
            new_condition("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.".into(), self.now)
        };
        set_condition(&mut self.status, condition);
    }

    /// Status plus the Progressing condition (`syncRolloutStatus`).
    fn sync_rollout_status(&mut self) {
        self.sync_status();
        if progress_deadline(self.d).is_none() {
            remove_condition(&mut self.status, "Progressing");
            return;
        }
        let new_name = self.new.map(|n| self.rss[n].metadata.name.clone().unwrap_or_default());
        let current = condition(&self.status, "Progressing").cloned();
        let already_complete = self.status.replicas == self.status.updated_replicas
            && current.as_ref().is_some_and(|c| c.reason.as_deref() == Some("NewReplicaSetAvailable"));
        if already_complete {
            return;
        }
        let replica_set = |verb: &str| match &new_name {
            Some(name) => format!("ReplicaSet \"{name}\" {verb}"),
            None => format!("Deployment {verb}"),
        };
        if is_complete(self.d, &self.status) {
            let condition = new_condition("Progressing", "True", "NewReplicaSetAvailable", replica_set("has successfully progressed."), self.now);
            set_condition(&mut self.status, condition);
        } else if is_progressing(self.d, &self.status) {
            let mut condition = new_condition("Progressing", "True", "ReplicaSetUpdated", replica_set("is progressing."), self.now);
            if let Some(current) = current.filter(|c| c.status == "True") {
                condition.last_transition_time = current.last_transition_time;
            }
            remove_condition(&mut self.status, "Progressing");
            set_condition(&mut self.status, condition);
        } else if seconds_to_deadline(self.d, &self.status, self.now).is_some_and(|left| left < 0.0) {
            let condition = new_condition("Progressing", "False", "ProgressDeadlineExceeded", replica_set("has timed out progressing."), self.now);
            set_condition(&mut self.status, condition);
        }
    }

    fn finish(self, mut plan: Plan) -> Plan {
        for (index, rs) in self.rss.into_iter().enumerate() {
            if self.doomed.contains(&index) {
                plan.delete.push(rs);
            } else if self.created && Some(index) == self.new {
                plan.create = Some(rs);
            } else if self.touched.contains(&index) {
                plan.update.push((rs, self.original_replicas[index]));
            }
        }
        if let Some(left) = seconds_to_deadline(self.d, &self.status, self.now).filter(|left| *left >= 0.0) {
            if !is_complete(self.d, &self.status) {
                plan.requeue_after = Some(Duration::from_secs_f64(left + 1.0));
            }
        }
        if self.d.status.as_ref() != Some(&self.status) {
            plan.status = Some(self.status);
        }
        plan.annotations = self.annotations;
        plan
    }
}

/// The new ReplicaSet runs everything: as many replicas and available pods as wanted.
fn is_saturated(d: &Deployment, rs: &ReplicaSet) -> bool {
    let desired = replicas(d);
    rs_replicas(rs) == desired && annotation_i32(rs, DESIRED_REPLICAS) == Some(desired) && rs_available(rs) == desired
}

fn strip_hash(template: &mut PodTemplateSpec) {
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    if template.metadata.as_ref().and_then(|m| m.labels.as_ref()).is_some_and(BTreeMap::is_empty) {
        if let Some(meta) = template.metadata.as_mut() {
            meta.labels = None;
        }
    }
}

fn template_without_hash(rs: &ReplicaSet) -> Option<PodTemplateSpec> {
    let mut template = rs.spec.as_ref()?.template.clone()?;
    strip_hash(&mut template);
    Some(template)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentSpec, DeploymentStrategy, ReplicaSetStatus, RollingUpdateDeployment};
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn deployment(replicas: i32, image: &str) -> Deployment {
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("uid-d".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector { match_labels: Some(labels.clone()), ..Default::default() },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
                    spec: Some(PodSpec {
                        containers: vec![Container { name: "web".into(), image: Some(image.into()), ..Default::default() }],
                        ..Default::default()
                    }),
                },
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(IntOrString::String("25%".into())),
                        max_unavailable: Some(IntOrString::String("25%".into())),
                    }),
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// A tiny cluster: applies plans, and lets ReplicaSets make all their pods
    /// available at once (what the ReplicaSet controller and nodes would do).
    struct World {
        d: Deployment,
        rss: Vec<ReplicaSet>,
        clock: i64,
    }

    impl World {
        fn new(d: Deployment) -> Self {
            Self { d, rss: Vec::new(), clock: 0 }
        }

        fn step(&mut self) -> Plan {
            self.clock += 1;
            let rss: Vec<Arc<ReplicaSet>> = self.rss.iter().cloned().map(Arc::new).collect();
            let plan = plan(&self.d, &rss, &[], at(self.clock)).unwrap();
            if let Some(mut rs) = plan.create.clone() {
                rs.metadata.uid = rs.metadata.name.clone();
                rs.metadata.creation_timestamp = Some(Time(at(self.clock)));
                self.rss.push(rs);
            }
            for (rs, _) in &plan.update {
                let slot = self.rss.iter_mut().find(|r| r.metadata.name == rs.metadata.name).unwrap();
                *slot = ReplicaSet { status: slot.status.clone(), ..rs.clone() };
            }
            self.rss.retain(|rs| !plan.delete.iter().any(|d| d.metadata.name == rs.metadata.name));
            if let Some(status) = &plan.status {
                self.d.status = Some(status.clone());
            }
            if let Some(annotations) = &plan.annotations {
                self.d.metadata.annotations = Some(annotations.clone());
            }
            plan
        }

        /// Every ReplicaSet's pods become ready and available.
        fn settle(&mut self) {
            for rs in &mut self.rss {
                let n = rs_replicas(rs);
                rs.status = Some(ReplicaSetStatus {
                    replicas: n,
                    ready_replicas: Some(n),
                    available_replicas: Some(n),
                    observed_generation: rs.metadata.generation,
                    ..Default::default()
                });
            }
        }

        fn total_pods(&self) -> i32 {
            self.rss.iter().map(|rs| rs_replicas(rs).max(rs_status_replicas(rs))).sum()
        }

        fn available(&self) -> i32 {
            self.rss.iter().map(rs_available).sum()
        }

        /// Runs the rollout to the end, checking the bounds after every step.
        fn roll_out(&mut self, max_pods: i32, min_available: i32) {
            for _ in 0..100 {
                let plan = self.step();
                assert!(self.total_pods() <= max_pods, "surge bound broken: {} pods", self.total_pods());
                assert!(self.available() >= min_available, "unavailability bound broken: {} available", self.available());
                self.settle();
                if plan.create.is_none() && plan.update.is_empty() && plan.status.is_none() {
                    return;
                }
            }
            panic!("rollout did not finish");
        }

        fn condition(&self, type_: &str) -> DeploymentCondition {
            condition(self.d.status.as_ref().unwrap(), type_).cloned().unwrap()
        }
    }

    #[test]
    fn a_new_deployment_gets_a_replicaset_with_the_template_hash() {
        let mut world = World::new(deployment(3, "nginx:1"));
        let plan = world.step();
        let rs = plan.create.expect("creates a ReplicaSet");
        let hash = rs.metadata.labels.as_ref().unwrap()[POD_TEMPLATE_HASH].clone();
        assert_eq!(rs.metadata.name.as_deref(), Some(format!("web-{hash}").as_str()));
        assert_eq!(rs_replicas(&rs), 3);
        assert_eq!(revision(&rs), 1);
        assert_eq!(rs.spec.as_ref().unwrap().selector.match_labels.as_ref().unwrap()[POD_TEMPLATE_HASH], hash);
        assert_eq!(world.condition("Progressing").reason.as_deref(), Some("NewReplicaSetCreated"));
        assert_eq!(world.d.metadata.annotations.as_ref().unwrap()[REVISION], "1");
    }

    #[test]
    fn a_rollout_completes_within_surge_and_unavailability_bounds() {
        let mut world = World::new(deployment(10, "nginx:1"));
        world.roll_out(10, 0);
        assert_eq!(world.condition("Progressing").reason.as_deref(), Some("NewReplicaSetAvailable"));
        assert_eq!(world.condition("Available").status, "True");

        world.d.spec.as_mut().unwrap().template.spec.as_mut().unwrap().containers[0].image = Some("nginx:2".into());
        world.d.metadata.generation = Some(2);
        // 25% of 10: surge 3 (rounded up), unavailable 2 (rounded down).
        world.roll_out(13, 8);
        let status = world.d.status.clone().unwrap();
        assert_eq!(status.updated_replicas, Some(10));
        assert_eq!(status.available_replicas, Some(10));
        assert_eq!(status.replicas, Some(10));
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(world.rss.len(), 2, "the old ReplicaSet stays, scaled to zero");
        let new = world.rss.iter().find(|rs| rs_replicas(rs) == 10).unwrap();
        assert_eq!(revision(new), 2);
        assert_eq!(world.condition("Progressing").message.as_deref(), Some(format!("ReplicaSet \"{}\" has successfully progressed.", new.metadata.name.as_deref().unwrap()).as_str()));
    }

    #[test]
    fn rolling_back_reuses_the_old_replicaset_with_a_new_revision() {
        let mut world = World::new(deployment(4, "nginx:1"));
        world.roll_out(4, 0);
        let first = world.rss[0].metadata.name.clone();
        world.d.spec.as_mut().unwrap().template.spec.as_mut().unwrap().containers[0].image = Some("nginx:2".into());
        world.roll_out(5, 3);
        world.d.spec.as_mut().unwrap().template.spec.as_mut().unwrap().containers[0].image = Some("nginx:1".into());
        world.roll_out(5, 3);
        assert_eq!(world.rss.len(), 2);
        let back = world.rss.iter().find(|rs| rs.metadata.name == first).unwrap();
        assert_eq!(rs_replicas(back), 4);
        assert_eq!(revision(back), 3);
        assert_eq!(back.metadata.annotations.as_ref().unwrap()[REVISION_HISTORY], "1");
    }

    #[test]
    fn recreate_scales_the_old_down_before_creating_the_new() {
        let mut d = deployment(3, "nginx:1");
        d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy { type_: Some("Recreate".into()), rolling_update: None });
        let mut world = World::new(d);
        world.roll_out(3, 0);
        world.d.spec.as_mut().unwrap().template.spec.as_mut().unwrap().containers[0].image = Some("nginx:2".into());
        let plan = world.step();
        assert!(plan.create.is_none(), "nothing new while old pods run");
        assert_eq!(rs_replicas(&plan.update[0].0), 0);
        world.settle();
        let plan = world.step();
        assert_eq!(plan.create.map(|rs| rs_replicas(&rs)), Some(3));
    }

    #[test]
    fn old_replicasets_beyond_the_history_limit_are_deleted() {
        let mut d = deployment(1, "v0");
        d.spec.as_mut().unwrap().revision_history_limit = Some(1);
        let mut world = World::new(d);
        for version in 1..=4 {
            world.d.spec.as_mut().unwrap().template.spec.as_mut().unwrap().containers[0].image = Some(format!("v{version}"));
            world.roll_out(2, 0);
            world.step();
        }
        assert_eq!(world.rss.len(), 2, "the new one and one old one");
    }

    #[test]
    fn a_paused_deployment_does_not_roll_out() {
        let mut world = World::new(deployment(2, "nginx:1"));
        world.roll_out(2, 0);
        world.d.spec.as_mut().unwrap().paused = Some(true);
        world.d.spec.as_mut().unwrap().template.spec.as_mut().unwrap().containers[0].image = Some("nginx:2".into());
        let plan = world.step();
        assert!(plan.create.is_none());
        assert_eq!(world.condition("Progressing").reason.as_deref(), Some("DeploymentPaused"));
    }

    #[test]
    fn scaling_during_a_rollout_is_proportional() {
        let mut world = World::new(deployment(10, "nginx:1"));
        world.roll_out(10, 0);
        world.d.spec.as_mut().unwrap().template.spec.as_mut().unwrap().containers[0].image = Some("nginx:2".into());
        world.step();
        world.settle();
        world.step();
        world.settle();
        world.d.spec.as_mut().unwrap().replicas = Some(20);
        world.step();
        let sizes: Vec<i32> = world.rss.iter().map(rs_replicas).collect();
        assert_eq!(sizes.iter().sum::<i32>(), 20 + 5, "20 replicas plus a 25% surge of 5");
        assert!(sizes.iter().all(|s| *s > 0), "both ReplicaSets grew: {sizes:?}");
    }

    #[test]
    fn no_progress_past_the_deadline_is_reported() {
        let mut d = deployment(1, "nginx:1");
        d.spec.as_mut().unwrap().progress_deadline_seconds = Some(10);
        let mut world = World::new(d);
        world.step();
        world.clock += 60;
        world.step();
        let progressing = world.condition("Progressing");
        assert_eq!(progressing.status, "False");
        assert_eq!(progressing.reason.as_deref(), Some("ProgressDeadlineExceeded"));
        assert_eq!(world.condition("Available").reason.as_deref(), Some("MinimumReplicasUnavailable"));
    }
}
