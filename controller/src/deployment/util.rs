//! Deployment arithmetic and bookkeeping shared by the rollout strategies:
//! surge and unavailability bounds, revisions, annotations and conditions.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// Annotations a Deployment does not pass on to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
pub const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;

pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

pub fn rs_status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

/// Available pods of `rs`, never more than it is scaled to: right after a scale
/// down its status still counts the pods it is about to delete, and trusting that
/// would let a rollout take away more than `maxUnavailable`.
pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0).min(rs_replicas(rs))
}

pub fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)
}

pub fn is_recreate(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()) == Some("Recreate")
}

/// An int or a percentage of `total`, rounded up or down.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(text) => {
            let percent: i64 = text
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {text:?}"))?;
            let scaled = percent * i64::from(total);
            let value = if round_up { (scaled + 99).div_euclid(100) } else { scaled.div_euclid(100) };
            Ok(i32::try_from(value).unwrap_or(i32::MAX))
        }
    }
}

/// `(maxSurge, maxUnavailable)` as numbers of pods: surge rounds up, unavailable
/// down, and both zero would deadlock so unavailable becomes one.
pub fn fenceposts(d: &Deployment) -> Result<(i32, i32), String> {
    let rolling = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let quarter = IntOrString::String("25%".into());
    let surge = rolling.and_then(|r| r.max_surge.clone()).unwrap_or_else(|| quarter.clone());
    let unavailable = rolling.and_then(|r| r.max_unavailable.clone()).unwrap_or(quarter);
    let total = replicas(d);
    let surge = scaled_value(&surge, total, true)?;
    let unavailable = scaled_value(&unavailable, total, false)?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

pub fn max_surge(d: &Deployment) -> i32 {
    if is_recreate(d) {
        return 0;
    }
    fenceposts(d).map_or(0, |(surge, _)| surge)
}

pub fn max_unavailable(d: &Deployment) -> i32 {
    if is_recreate(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).map_or(0, |(_, unavailable)| unavailable.min(replicas(d)))
}

pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// Copies the Deployment's annotations to `rs`; true if anything changed.
pub fn copy_annotations(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let target = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in d.metadata.annotations.iter().flatten() {
        if NOT_COPIED.contains(&key.as_str()) || target.get(key) == Some(value) {
            continue;
        }
        target.insert(key.clone(), value.clone());
        changed = true;
    }
    changed
}

/// Sets the desired and max replica annotations; true if they changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.to_string(), value);
            changed = true;
        }
    }
    changed
}

pub fn annotation_i32(rs: &ReplicaSet, key: &str) -> Option<i32> {
    rs.metadata.annotations.as_ref()?.get(key)?.parse().ok()
}

pub fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status.conditions.iter().flatten().find(|c| c.type_ == type_)
}

pub fn new_condition(type_: &str, status: &str, reason: &str, message: String, now: Timestamp) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Kubernetes' `SetDeploymentCondition`: same status and reason changes nothing;
/// same status keeps the transition time.
pub fn set_condition(status: &mut DeploymentStatus, mut condition: DeploymentCondition) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(current) = conditions.iter().find(|c| c.type_ == condition.type_) {
        if current.status == condition.status && current.reason == condition.reason {
            return;
        }
        if current.status == condition.status {
            condition.last_transition_time = current.last_transition_time.clone();
        }
    }
    conditions.retain(|c| c.type_ != condition.type_);
    conditions.push(condition);
}

pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
    }
}

pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    let deadline = d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS);
    // MaxInt32 means "no deadline", as in Kubernetes.
    (deadline != i32::MAX).then_some(deadline)
}

/// The rollout is done: every replica updated and available, nothing old left.
pub fn is_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let want = replicas(d);
    status.updated_replicas == Some(want)
        && status.replicas == Some(want)
        && status.available_replicas == Some(want)
        && status.observed_generation >= d.metadata.generation
}

/// Something moved since the last recorded status.
pub fn is_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_pods = |s: &DeploymentStatus| s.replicas.unwrap_or(0) - s.updated_replicas.unwrap_or(0);
    new.updated_replicas.unwrap_or(0) > old.updated_replicas.unwrap_or(0)
        || old_pods(new) < old_pods(&old)
        || new.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
        || new.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
}

/// Seconds until the progress deadline passes (negative once it has), if it applies.
pub fn seconds_to_deadline(d: &Deployment, status: &DeploymentStatus, now: Timestamp) -> Option<f64> {
    let deadline = progress_deadline(d)?;
    let progressing = condition(status, "Progressing")?;
    if progressing.reason.as_deref() == Some("NewReplicaSetAvailable") {
        return None;
    }
    let since = progressing.last_update_time.as_ref()?.0;
    Some(f64::from(deadline) - client::time::seconds_between(&since, &now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};

    fn rolling(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment { max_surge: Some(surge), max_unavailable: Some(unavailable) }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn percentages_round_surge_up_and_unavailable_down() {
        let d = rolling(10, IntOrString::String("25%".into()), IntOrString::String("25%".into()));
        assert_eq!(fenceposts(&d), Ok((3, 2)));
        let d = rolling(50, IntOrString::Int(5), IntOrString::String("10%".into()));
        assert_eq!(fenceposts(&d), Ok((5, 5)));
    }

    #[test]
    fn zero_surge_and_zero_unavailable_becomes_one_unavailable() {
        let d = rolling(3, IntOrString::Int(0), IntOrString::String("10%".into()));
        assert_eq!(fenceposts(&d), Ok((0, 1)));
        assert_eq!(max_unavailable(&d), 1);
    }

    #[test]
    fn a_bad_percentage_is_an_error() {
        assert!(scaled_value(&IntOrString::String("lots".into()), 10, true).is_err());
    }
}
