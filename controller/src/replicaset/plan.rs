//! The ReplicaSet reconcile as a pure function: from the ReplicaSet and the pods
//! of its namespace to what has to change.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use crate::pods;
use api::selector::Selector;

/// Pods created per reconcile at most; the rest come on the next pass, as in
/// Kubernetes' `burstReplicas`.
pub const BURST_REPLICAS: usize = 500;

/// What one reconcile of a ReplicaSet changes.
#[derive(Debug, Default)]
pub struct Plan {
    /// Orphans that match the selector: take them.
    pub adopt: Vec<Arc<Pod>>,
    /// Owned pods that no longer match: let them go.
    pub release: Vec<Arc<Pod>>,
    /// How many pods to create.
    pub create: usize,
    /// Surplus pods, in deletion order.
    pub delete: Vec<Arc<Pod>>,
    pub status: ReplicaSetStatus,
    /// Some pods are ready but not yet available: look again after this many seconds.
    pub recheck_after_seconds: Option<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("ReplicaSet has no selector")]
    NoSelector,
    #[error(transparent)]
    Selector(#[from] api::selector::SelectorError),
}

/// Plans one reconcile. `may_scale` is false while earlier creations or deletions
/// are not yet visible in the cache: then counts are left alone.
pub fn plan(rs: &ReplicaSet, namespace_pods: &[Arc<Pod>], now: Timestamp, may_scale: bool) -> Result<Plan, PlanError> {
    let spec = rs.spec.as_ref().ok_or(PlanError::NoSelector)?;
    let selector = Selector::from_label_selector(&spec.selector)?;
    let uid = rs.metadata.uid.as_deref().unwrap_or_default();
    let rs_deleting = rs.metadata.deletion_timestamp.is_some();

    let mut plan = Plan::default();
    let mut owned: Vec<Arc<Pod>> = Vec::new();
    for pod in namespace_pods {
        let matches = selector.matches(pods::labels(&pod.metadata));
        match pods::controller_of(&pod.metadata) {
            Some(owner) if owner.uid == uid => {
                if matches || rs_deleting {
                    owned.push(pod.clone());
                } else {
                    plan.release.push(pod.clone());
                }
            }
            Some(_) => {}
            None if matches && !rs_deleting && pod.metadata.deletion_timestamp.is_none() => {
                plan.adopt.push(pod.clone());
                owned.push(pod.clone());
            }
            None => {}
        }
    }
    let mut active: Vec<Arc<Pod>> = owned.iter().filter(|p| pods::is_active(p)).cloned().collect();

    let replicas = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
    if may_scale && !rs_deleting {
        if active.len() < replicas {
            plan.create = (replicas - active.len()).min(BURST_REPLICAS);
        } else if active.len() > replicas {
            active.sort_by(|a, b| pods::deletion_order(a, b));
            plan.delete = active[..active.len() - replicas].to_vec();
        }
    }

    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    plan.status = status(rs, &active, now);
    if min_ready > 0 && plan.status.available_replicas < plan.status.ready_replicas {
        plan.recheck_after_seconds = Some(min_ready);
    }
    Ok(plan)
}

/// The status Kubernetes computes from the active pods (before this pass changes them).
fn status(rs: &ReplicaSet, active: &[Arc<Pod>], now: Timestamp) -> ReplicaSetStatus {
    let spec = rs.spec.as_ref();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let fully_labeled = active
        .iter()
        .filter(|p| template_labels.iter().all(|(k, v)| pods::labels(&p.metadata).get(k) == Some(v)))
        .count();
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    ReplicaSetStatus {
        replicas: count(active.len()),
        fully_labeled_replicas: Some(count(fully_labeled)),
        ready_replicas: Some(count(active.iter().filter(|p| pods::is_ready(p)).count())),
        available_replicas: Some(count(active.iter().filter(|p| pods::is_available(p, min_ready, now)).count())),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
        terminating_replicas: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::testing::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    fn replicaset(replicas: i32, min_ready: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("uid-web".into()),
                generation: Some(3),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: Some(min_ready),
                selector: LabelSelector {
                    match_labels: Some([("app".to_string(), "web".to_string())].into()),
                    ..Default::default()
                },
                template: None,
            }),
            status: None,
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn creates_the_missing_pods() {
        let pods = vec![Arc::new(owned_by(pod("a", &[("app", "web")]), "ReplicaSet", "web"))];
        let plan = plan(&replicaset(3, 0), &pods, at(0), true).unwrap();
        assert_eq!(plan.create, 2);
        assert!(plan.delete.is_empty());
        assert_eq!(plan.status.replicas, 1);
        assert_eq!(plan.status.observed_generation, Some(3));
    }

    #[test]
    fn does_not_count_again_while_expectations_are_pending() {
        let plan = plan(&replicaset(3, 0), &[], at(0), false).unwrap();
        assert_eq!(plan.create, 0);
    }

    #[test]
    fn adopts_matching_orphans_and_releases_owned_pods_that_stopped_matching() {
        let pods = vec![
            Arc::new(pod("orphan", &[("app", "web")])),
            Arc::new(owned_by(pod("relabeled", &[("app", "other")]), "ReplicaSet", "web")),
            Arc::new(owned_by(pod("foreign", &[("app", "web")]), "ReplicaSet", "other")),
        ];
        let plan = plan(&replicaset(1, 0), &pods, at(0), true).unwrap();
        assert_eq!(plan.adopt.len(), 1);
        assert_eq!(plan.release.len(), 1);
        assert_eq!(plan.release[0].metadata.name.as_deref(), Some("relabeled"));
        assert_eq!(plan.create, 0, "the adopted orphan counts");
    }

    #[test]
    fn deletes_surplus_unready_pods_first() {
        let pods = vec![
            Arc::new(owned_by(running_ready(pod("ready", &[("app", "web")]), "n1", at(0)), "ReplicaSet", "web")),
            Arc::new(owned_by(pod("pending", &[("app", "web")]), "ReplicaSet", "web")),
        ];
        let plan = plan(&replicaset(1, 0), &pods, at(10), true).unwrap();
        assert_eq!(plan.delete.len(), 1);
        assert_eq!(plan.delete[0].metadata.name.as_deref(), Some("pending"));
    }

    #[test]
    fn availability_honours_min_ready_seconds() {
        let pods = vec![Arc::new(owned_by(running_ready(pod("a", &[("app", "web")]), "n1", at(100)), "ReplicaSet", "web"))];
        let plan = plan(&replicaset(1, 30), &pods, at(110), true).unwrap();
        assert_eq!(plan.status.ready_replicas, Some(1));
        assert_eq!(plan.status.available_replicas, Some(0));
        assert_eq!(plan.recheck_after_seconds, Some(30));
    }

    #[test]
    fn finished_and_deleting_pods_do_not_count() {
        let mut done = owned_by(pod("done", &[("app", "web")]), "ReplicaSet", "web");
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let mut going = owned_by(pod("going", &[("app", "web")]), "ReplicaSet", "web");
        going.metadata.deletion_timestamp = Some(client::time::now());
        let plan = plan(&replicaset(1, 0), &[Arc::new(done), Arc::new(going)], at(0), true).unwrap();
        assert_eq!(plan.create, 1);
    }
}
