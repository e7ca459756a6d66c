//! apps/v1 and batch/v1 defaults (`SetDefaults_Deployment`, `_ReplicaSet`, `_DaemonSet`, `_Job`).

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, Deployment, DeploymentSpec,
    DeploymentStrategy, ReplicaSet, ReplicaSetSpec, RollingUpdateDaemonSet,
    RollingUpdateDeployment,
};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pod::default_pod_spec;

/// Labels Kubernetes puts on a Job's pods and selects them by.
pub const JOB_NAME_LABELS: [&str; 2] = ["job-name", "batch.kubernetes.io/job-name"];
pub const JOB_CONTROLLER_UID_LABELS: [&str; 2] =
    ["controller-uid", "batch.kubernetes.io/controller-uid"];

fn default_template(template: &mut PodTemplateSpec) {
    default_pod_spec(template.spec.get_or_insert_with(Default::default));
}

fn is_unset(s: &Option<String>) -> bool {
    s.as_deref().unwrap_or("").is_empty()
}

pub fn default_deployment(deployment: &mut Deployment) {
    let spec = deployment.spec.get_or_insert_with(DeploymentSpec::default);
    spec.replicas.get_or_insert(1);
    let strategy = spec
        .strategy
        .get_or_insert_with(DeploymentStrategy::default);
    if is_unset(&strategy.type_) {
        strategy.type_ = Some("RollingUpdate".into());
    }
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let rolling = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDeployment::default);
        rolling
            .max_unavailable
            .get_or_insert_with(|| IntOrString::String("25%".into()));
        rolling
            .max_surge
            .get_or_insert_with(|| IntOrString::String("25%".into()));
    }
    spec.revision_history_limit.get_or_insert(10);
    spec.progress_deadline_seconds.get_or_insert(600);
    default_template(&mut spec.template);
}

pub fn default_replica_set(replica_set: &mut ReplicaSet) {
    let spec = replica_set.spec.get_or_insert_with(ReplicaSetSpec::default);
    spec.replicas.get_or_insert(1);
    if let Some(template) = spec.template.as_mut() {
        default_template(template);
    }
}

pub fn default_daemon_set(daemon_set: &mut DaemonSet) {
    let spec = daemon_set.spec.get_or_insert_with(DaemonSetSpec::default);
    let strategy = spec
        .update_strategy
        .get_or_insert_with(DaemonSetUpdateStrategy::default);
    if is_unset(&strategy.type_) {
        strategy.type_ = Some("RollingUpdate".into());
    }
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let rolling = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDaemonSet::default);
        rolling.max_unavailable.get_or_insert(IntOrString::Int(1));
        rolling.max_surge.get_or_insert(IntOrString::Int(0));
    }
    spec.revision_history_limit.get_or_insert(10);
    default_template(&mut spec.template);
}

/// Job defaults.
pub fn default_job(job: &mut Job) {
    let spec = job.spec.get_or_insert_with(JobSpec::default);
    if spec.completions.is_none() && spec.parallelism.is_none() {
        spec.completions = Some(1);
    }
    spec.parallelism.get_or_insert(1);
    let backoff = if spec.backoff_limit_per_index.is_some() {
        i32::MAX
    } else {
        6
    };
    spec.backoff_limit.get_or_insert(backoff);
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone());
    if template_labels.is_some() && job.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
        job.metadata.labels = template_labels;
    }
    spec.completion_mode
        .get_or_insert_with(|| "NonIndexed".into());
    spec.suspend.get_or_insert(false);
    let replacement = if spec.pod_failure_policy.is_some() {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    spec.pod_replacement_policy
        .get_or_insert_with(|| replacement.into());
    spec.manual_selector.get_or_insert(false);
    // As in Kubernetes, an unset template restartPolicy becomes Always here, which
    // validation then rejects with "supported values: \"OnFailure\", \"Never\"".
    default_template(&mut spec.template);
}

/// What the API server does on Job creation unless `manualSelector` is true:
/// label the pod template with the job's name and uid and select on the uid.
/// Needs `metadata.name` and `metadata.uid` set.
pub fn generate_job_selector(job: &mut Job) {
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let spec = job.spec.get_or_insert_with(JobSpec::default);
    if spec.manual_selector == Some(true) {
        return;
    }
    let labels = spec
        .template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default);
    for key in JOB_NAME_LABELS {
        labels.entry(key.into()).or_insert_with(|| name.clone());
    }
    for key in JOB_CONTROLLER_UID_LABELS {
        labels.entry(key.into()).or_insert_with(|| uid.clone());
    }
    let selector = spec.selector.get_or_insert_with(LabelSelector::default);
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .entry(JOB_CONTROLLER_UID_LABELS[1].into())
        .or_insert(uid);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_minimal_deployment_gets_kubernetes_defaults() {
        let mut d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}
        }))
        .unwrap();
        default_deployment(&mut d);
        assert_eq!(
            serde_json::to_value(&d.spec).unwrap(),
            json!({
                "replicas": 1,
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                    "containers": [{"name": "web", "image": "nginx:1.25", "imagePullPolicy": "IfNotPresent", "resources": {},
                        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}],
                    "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                    "securityContext": {}, "terminationGracePeriodSeconds": 30}}
            })
        );
    }

    #[test]
    fn replica_set_and_daemon_set_defaults() {
        let mut rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "web"},
            "spec": {"selector": {}, "template": {"spec": {"containers": []}}}}))
        .unwrap();
        default_replica_set(&mut rs);
        assert_eq!(rs.spec.as_ref().unwrap().replicas, Some(1));
        let mut ds: DaemonSet = serde_json::from_value(json!({"metadata": {"name": "agent"},
            "spec": {"selector": {}, "template": {"spec": {"containers": []}}}}))
        .unwrap();
        default_daemon_set(&mut ds);
        let spec = serde_json::to_value(ds.spec.unwrap()).unwrap();
        assert_eq!(
            spec["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(spec["revisionHistoryLimit"], json!(10));
    }

    #[test]
    fn job_defaults_and_generated_selector() {
        let mut job: Job = serde_json::from_value(json!({"metadata": {"name": "pi", "uid": "u-1"},
            "spec": {"template": {"metadata": {"labels": {"app": "pi"}}, "spec": {"containers": [{"name": "pi", "image": "perl"}]}}}})).unwrap();
        default_job(&mut job);
        generate_job_selector(&mut job);
        let value = serde_json::to_value(&job).unwrap();
        let spec = &value["spec"];
        for (field, want) in [
            ("parallelism", json!(1)),
            ("completions", json!(1)),
            ("backoffLimit", json!(6)),
            ("completionMode", json!("NonIndexed")),
            ("suspend", json!(false)),
            ("podReplacementPolicy", json!("TerminatingOrFailed")),
            ("manualSelector", json!(false)),
            (
                "selector",
                json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}),
            ),
        ] {
            assert_eq!(spec[field], want, "{field}");
        }
        assert_eq!(spec["template"]["spec"]["restartPolicy"], json!("Always"));
        assert_eq!(spec["template"]["spec"]["dnsPolicy"], json!("ClusterFirst"));
        assert_eq!(value["metadata"]["labels"], json!({"app": "pi"}));
        assert_eq!(
            spec["template"]["metadata"]["labels"],
            json!({"app": "pi", "job-name": "pi", "batch.kubernetes.io/job-name": "pi",
                "controller-uid": "u-1", "batch.kubernetes.io/controller-uid": "u-1"})
        );
    }
}
