//! apps/v1 Deployment, ReplicaSet, DaemonSet and batch/v1 Job (`pkg/apis/apps/validation`,
//! `pkg/apis/batch/validation`).

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::field::{go_string_map, BadValue, FieldError, Path};
use super::meta::{self, validate_nonnegative, Scope, FIELD_IMMUTABLE_ERROR_MSG};
use super::names;
use super::pod::validate_pod_template_spec;
use crate::selector;

fn metadata(meta: &ObjectMeta) -> Vec<FieldError> {
    meta::validate_object_meta(
        meta,
        Scope::Namespaced,
        names::name_is_dns_subdomain,
        &Path::new("metadata"),
    )
}

fn template_labels(template: &PodTemplateSpec) -> std::collections::BTreeMap<String, String> {
    template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

fn selector_is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty())
}

/// The selector is valid and not empty (`kind_word` is Kubernetes' word in the message).
fn validate_selector(selector: &LabelSelector, kind_word: &str, path: &Path) -> Vec<FieldError> {
    let mut errs = meta::validate_label_selector(selector, path);
    if selector_is_empty(selector) {
        errs.push(FieldError::invalid(
            path,
            BadValue::Raw(meta::go_label_selector(selector)),
            &format!("empty selector is invalid for {kind_word}"),
        ));
    }
    errs
}

/// The selector must select the template's labels.
fn validate_selector_matches_template(
    selector: &LabelSelector,
    template: &PodTemplateSpec,
    path: &Path,
) -> Vec<FieldError> {
    let labels = template_labels(template);
    match selector::Selector::from_label_selector(selector) {
        Ok(s) if !s.is_empty() && !s.matches(&labels) => vec![FieldError::invalid(
            &path.child("metadata").child("labels"),
            BadValue::Raw(go_string_map(&labels)),
            "`selector` does not match template `labels`",
        )],
        _ => Vec::new(),
    }
}

/// A template for pods that run forever: restartPolicy Always, no deadline.
fn validate_long_running_template(
    template: &PodTemplateSpec,
    kind: &str,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = validate_pod_template_spec(template, path);
    let Some(spec) = &template.spec else {
        return errs;
    };
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("");
    if restart_policy != "Always" {
        errs.push(FieldError::not_supported(
            &path.child("spec").child("restartPolicy"),
            restart_policy,
            &["Always"],
        ));
    }
    if let Some(deadline) = spec.active_deadline_seconds {
        errs.push(FieldError::invalid(
            &path.child("spec").child("activeDeadlineSeconds"),
            deadline,
            &format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
    errs
}

/// The numeric value of an int-or-percent (percent as its number), or None if malformed.
fn int_or_percent_value(value: &IntOrString) -> Option<i64> {
    match value {
        IntOrString::Int(n) => Some((*n).into()),
        IntOrString::String(s) => s.strip_suffix('%')?.parse().ok(),
    }
}

fn int_or_percent_raw(value: &IntOrString) -> BadValue {
    match value {
        IntOrString::Int(n) => BadValue::Raw(n.to_string()),
        IntOrString::String(s) => BadValue::Raw(s.clone()),
    }
}

fn validate_int_or_percent(value: Option<&IntOrString>, path: &Path) -> Vec<FieldError> {
    match value {
        Some(IntOrString::String(s)) => names::is_valid_percent(s)
            .iter()
            .map(|msg| FieldError::invalid(path, BadValue::Raw(s.clone()), msg))
            .collect(),
        Some(IntOrString::Int(n)) => validate_nonnegative((*n).into(), path),
        None => Vec::new(),
    }
}

fn not_more_than_100_percent(value: Option<&IntOrString>, path: &Path) -> Vec<FieldError> {
    match value {
        Some(v @ IntOrString::String(_)) if int_or_percent_value(v).is_some_and(|p| p > 100) => {
            vec![FieldError::invalid(
                path,
                int_or_percent_raw(v),
                "must not be greater than 100%",
            )]
        }
        _ => Vec::new(),
    }
}

fn is_zero(value: Option<&IntOrString>) -> bool {
    value.and_then(int_or_percent_value).unwrap_or(0) == 0
}

pub fn validate_deployment(deployment: &Deployment) -> Vec<FieldError> {
    let mut errs = metadata(&deployment.metadata);
    let path = Path::new("spec");
    let Some(spec) = &deployment.spec else {
        errs.push(FieldError::required(&path, ""));
        return errs;
    };
    errs.extend(validate_nonnegative(
        spec.replicas.unwrap_or(0).into(),
        &path.child("replicas"),
    ));
    errs.extend(validate_selector(
        &spec.selector,
        "deployment",
        &path.child("selector"),
    ));
    errs.extend(validate_selector_matches_template(
        &spec.selector,
        &spec.template,
        &path.child("template"),
    ));
    errs.extend(validate_long_running_template(
        &spec.template,
        "ReplicaSet",
        &path.child("template"),
    ));
    if let Some(strategy) = &spec.strategy {
        let p = path.child("strategy");
        match strategy.type_.as_deref().unwrap_or("") {
            "Recreate" => {
                if strategy.rolling_update.is_some() {
                    errs.push(FieldError::forbidden(
                        &p.child("rollingUpdate"),
                        "may not be specified when strategy `type` is 'Recreate'",
                    ));
                }
            }
            "RollingUpdate" => match &strategy.rolling_update {
                None => errs.push(FieldError::required(
                    &p.child("rollingUpdate"),
                    "this should be defaulted and never be nil",
                )),
                Some(rolling) => {
                    let rp = p.child("rollingUpdate");
                    let (unavailable, surge) =
                        (rolling.max_unavailable.as_ref(), rolling.max_surge.as_ref());
                    errs.extend(validate_int_or_percent(
                        unavailable,
                        &rp.child("maxUnavailable"),
                    ));
                    errs.extend(validate_int_or_percent(surge, &rp.child("maxSurge")));
                    if is_zero(unavailable) && is_zero(surge) {
                        let value = unavailable.map_or(BadValue::Null, int_or_percent_raw);
                        errs.push(FieldError::invalid(
                            &rp.child("maxUnavailable"),
                            value,
                            "may not be 0 when `maxSurge` is 0",
                        ));
                    }
                    errs.extend(not_more_than_100_percent(
                        unavailable,
                        &rp.child("maxUnavailable"),
                    ));
                }
            },
            other => errs.push(FieldError::not_supported(
                &p,
                other,
                &["Recreate", "RollingUpdate"],
            )),
        }
    }
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    errs.extend(validate_nonnegative(
        min_ready.into(),
        &path.child("minReadySeconds"),
    ));
    if let Some(limit) = spec.revision_history_limit {
        errs.extend(validate_nonnegative(
            limit.into(),
            &path.child("revisionHistoryLimit"),
        ));
    }
    if let Some(deadline) = spec.progress_deadline_seconds {
        let p = path.child("progressDeadlineSeconds");
        errs.extend(meta::validate_positive(deadline.into(), &p));
        if deadline <= min_ready {
            errs.push(FieldError::invalid(
                &p,
                deadline,
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs
}

pub fn validate_replica_set(replica_set: &ReplicaSet) -> Vec<FieldError> {
    let mut errs = metadata(&replica_set.metadata);
    let path = Path::new("spec");
    let Some(spec) = &replica_set.spec else {
        errs.push(FieldError::required(&path, ""));
        return errs;
    };
    errs.extend(validate_nonnegative(
        spec.replicas.unwrap_or(0).into(),
        &path.child("replicas"),
    ));
    errs.extend(validate_nonnegative(
        spec.min_ready_seconds.unwrap_or(0).into(),
        &path.child("minReadySeconds"),
    ));
    // Kubernetes says "deployment" here too.
    errs.extend(validate_selector(
        &spec.selector,
        "deployment",
        &path.child("selector"),
    ));
    match &spec.template {
        None => errs.push(FieldError::required(&path.child("template"), "")),
        Some(template) => {
            errs.extend(validate_selector_matches_template(
                &spec.selector,
                template,
                &path.child("template"),
            ));
            errs.extend(validate_long_running_template(
                template,
                "ReplicaSet",
                &path.child("template"),
            ));
        }
    }
    errs
}

pub fn validate_daemon_set(daemon_set: &DaemonSet) -> Vec<FieldError> {
    let mut errs = metadata(&daemon_set.metadata);
    let path = Path::new("spec");
    let Some(spec) = &daemon_set.spec else {
        errs.push(FieldError::required(&path, ""));
        return errs;
    };
    errs.extend(validate_selector(
        &spec.selector,
        "daemonset",
        &path.child("selector"),
    ));
    errs.extend(validate_selector_matches_template(
        &spec.selector,
        &spec.template,
        &path.child("template"),
    ));
    errs.extend(validate_long_running_template(
        &spec.template,
        "DaemonSet",
        &path.child("template"),
    ));
    errs.extend(validate_nonnegative(
        spec.min_ready_seconds.unwrap_or(0).into(),
        &path.child("minReadySeconds"),
    ));
    if let Some(limit) = spec.revision_history_limit {
        errs.extend(validate_nonnegative(
            limit.into(),
            &path.child("revisionHistoryLimit"),
        ));
    }
    if let Some(strategy) = &spec.update_strategy {
        let p = path.child("updateStrategy");
        match strategy.type_.as_deref().unwrap_or("") {
            "OnDelete" => {}
            "RollingUpdate" => match &strategy.rolling_update {
                None => errs.push(FieldError::required(&p.child("rollingUpdate"), "")),
                Some(rolling) => {
                    let rp = p.child("rollingUpdate");
                    let (unavailable, surge) =
                        (rolling.max_unavailable.as_ref(), rolling.max_surge.as_ref());
                    errs.extend(validate_int_or_percent(
                        unavailable,
                        &rp.child("maxUnavailable"),
                    ));
                    errs.extend(validate_int_or_percent(surge, &rp.child("maxSurge")));
                    errs.extend(not_more_than_100_percent(
                        unavailable,
                        &rp.child("maxUnavailable"),
                    ));
                    errs.extend(not_more_than_100_percent(surge, &rp.child("maxSurge")));
                    match (is_zero(unavailable), is_zero(surge)) {
                        (false, false) => errs.push(FieldError::invalid(
                            &rp.child("maxSurge"),
                            surge.map_or(BadValue::Null, int_or_percent_raw),
                            "may not be set when maxUnavailable is non-zero",
                        )),
                        (true, true) => errs.push(FieldError::required(
                            &rp.child("maxUnavailable"),
                            "cannot be 0 when maxSurge is 0",
                        )),
                        _ => {}
                    }
                }
            },
            other => errs.push(FieldError::not_supported(
                &p,
                other,
                &["RollingUpdate", "OnDelete"],
            )),
        }
    }
    errs
}

pub fn validate_job(job: &Job) -> Vec<FieldError> {
    let mut errs = metadata(&job.metadata);
    let path = Path::new("spec");
    let Some(spec) = &job.spec else {
        errs.push(FieldError::required(&path, ""));
        return errs;
    };
    let counts = [
        ("parallelism", spec.parallelism.map(i64::from)),
        ("completions", spec.completions.map(i64::from)),
        ("activeDeadlineSeconds", spec.active_deadline_seconds),
        ("backoffLimit", spec.backoff_limit.map(i64::from)),
        (
            "ttlSecondsAfterFinished",
            spec.ttl_seconds_after_finished.map(i64::from),
        ),
    ];
    for (field, value) in counts {
        if let Some(value) = value {
            errs.extend(validate_nonnegative(value, &path.child(field)));
        }
    }
    if let Some(mode) = spec.completion_mode.as_deref() {
        if !matches!(mode, "NonIndexed" | "Indexed") {
            errs.push(FieldError::not_supported(
                &path.child("completionMode"),
                mode,
                &["NonIndexed", "Indexed"],
            ));
        }
        if mode == "Indexed" && spec.completions.is_none() {
            errs.push(FieldError::required(
                &path.child("completions"),
                "when completion mode is Indexed",
            ));
        }
    }
    match &spec.selector {
        None => errs.push(FieldError::required(&path.child("selector"), "")),
        Some(selector) => {
            errs.extend(meta::validate_label_selector(
                selector,
                &path.child("selector"),
            ));
            errs.extend(validate_selector_matches_template(
                selector,
                &spec.template,
                &path.child("template"),
            ));
        }
    }
    errs.extend(validate_pod_template_spec(
        &spec.template,
        &path.child("template"),
    ));
    if let Some(pod_spec) = &spec.template.spec {
        let restart_policy = pod_spec.restart_policy.as_deref().unwrap_or("");
        if !matches!(restart_policy, "OnFailure" | "Never") {
            errs.push(FieldError::not_supported(
                &path.child("template").child("spec").child("restartPolicy"),
                restart_policy,
                &["OnFailure", "Never"],
            ));
        }
    }
    errs
}

fn immutable_selector(new: &LabelSelector, old: &LabelSelector, path: &Path) -> Vec<FieldError> {
    if new == old {
        Vec::new()
    } else {
        vec![FieldError::invalid(
            path,
            BadValue::Raw(meta::go_label_selector(new)),
            FIELD_IMMUTABLE_ERROR_MSG,
        )]
    }
}

fn selector_path() -> Path {
    Path::new("spec").child("selector")
}

/// What an update of any apps/v1 workload checks: the metadata change, the new
/// object on its own, and a selector that never changes.
fn validate_workload_update(
    new: &ObjectMeta,
    old: &ObjectMeta,
    new_object_errors: Vec<FieldError>,
    selectors: Option<(&LabelSelector, &LabelSelector)>,
) -> Vec<FieldError> {
    let mut errs = meta::validate_object_meta_update(new, old, &Path::new("metadata"));
    errs.extend(new_object_errors);
    if let Some((new_selector, old_selector)) = selectors {
        errs.extend(immutable_selector(new_selector, old_selector, &selector_path()));
    }
    errs
}

pub fn validate_deployment_update(new: &Deployment, old: &Deployment) -> Vec<FieldError> {
    let selectors = new.spec.as_ref().zip(old.spec.as_ref()).map(|(n, o)| (&n.selector, &o.selector));
    validate_workload_update(&new.metadata, &old.metadata, validate_deployment(new), selectors)
}

pub fn validate_replica_set_update(new: &ReplicaSet, old: &ReplicaSet) -> Vec<FieldError> {
    let selectors = new.spec.as_ref().zip(old.spec.as_ref()).map(|(n, o)| (&n.selector, &o.selector));
    validate_workload_update(&new.metadata, &old.metadata, validate_replica_set(new), selectors)
}

pub fn validate_daemon_set_update(new: &DaemonSet, old: &DaemonSet) -> Vec<FieldError> {
    let selectors = new.spec.as_ref().zip(old.spec.as_ref()).map(|(n, o)| (&n.selector, &o.selector));
    validate_workload_update(&new.metadata, &old.metadata, validate_daemon_set(new), selectors)
}

/// A Job's selector, template, completions and completion mode are fixed.
pub fn validate_job_update(new: &Job, old: &Job) -> Vec<FieldError> {
    let mut errs =
        meta::validate_object_meta_update(&new.metadata, &old.metadata, &Path::new("metadata"));
    errs.extend(validate_job(new));
    let (Some(n), Some(o)) = (&new.spec, &old.spec) else {
        return errs;
    };
    let path = Path::new("spec");
    if let (Some(ns), Some(os)) = (&n.selector, &o.selector) {
        errs.extend(immutable_selector(ns, os, &selector_path()));
    }
    if n.template != o.template {
        errs.push(FieldError::invalid(
            &path.child("template"),
            BadValue::Raw("core.PodTemplateSpec{...}".into()),
            FIELD_IMMUTABLE_ERROR_MSG,
        ));
    }
    if n.completions != o.completions {
        errs.push(FieldError::invalid(
            &path.child("completions"),
            n.completions,
            FIELD_IMMUTABLE_ERROR_MSG,
        ));
    }
    errs.extend(meta::validate_immutable_str(
        n.completion_mode.as_deref(),
        o.completion_mode.as_deref(),
        &path.child("completionMode"),
    ));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults;
    use serde_json::json;

    fn messages(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    fn deployment(spec: serde_json::Value) -> Deployment {
        let mut d: Deployment = serde_json::from_value(
            json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec}),
        )
        .unwrap();
        defaults::default_deployment(&mut d);
        d
    }

    fn web_spec() -> serde_json::Value {
        json!({"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}})
    }

    #[test]
    fn deployments() {
        assert_eq!(
            messages(validate_deployment(&deployment(web_spec()))),
            Vec::<String>::new()
        );
        let mut bad = web_spec();
        bad["replicas"] = json!(-1);
        bad["selector"] = json!({"matchLabels": {"app": "api"}});
        bad["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}});
        assert_eq!(
            messages(validate_deployment(&deployment(bad))),
            vec![
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0%: may not be 0 when `maxSurge` is 0",
            ]
        );
        let mut empty = web_spec();
        empty["selector"] = json!({});
        empty["template"]["spec"]["restartPolicy"] = json!("Never");
        assert_eq!(
            messages(validate_deployment(&deployment(empty))),
            vec![
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment",
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            ]
        );
    }

    #[test]
    fn deployment_selector_is_immutable() {
        let old = deployment(web_spec());
        let mut new_spec = web_spec();
        new_spec["selector"] = json!({"matchLabels": {"app": "web2"}});
        new_spec["template"]["metadata"]["labels"] = json!({"app": "web2"});
        assert_eq!(
            messages(validate_deployment_update(&deployment(new_spec), &old)),
            vec!["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"]
        );
    }

    #[test]
    fn daemon_sets_and_replica_sets() {
        let mut ds: DaemonSet = serde_json::from_value(
            json!({"metadata": {"name": "agent", "namespace": "default"},
            "spec": web_spec()}),
        )
        .unwrap();
        defaults::default_daemon_set(&mut ds);
        assert!(validate_daemon_set(&ds).is_empty());
        ds.spec
            .as_mut()
            .unwrap()
            .update_strategy
            .as_mut()
            .unwrap()
            .rolling_update
            .as_mut()
            .unwrap()
            .max_surge = Some(IntOrString::Int(1));
        assert_eq!(
            messages(validate_daemon_set(&ds)),
            vec!["spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero"]
        );
        let mut rs: ReplicaSet =
            serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": web_spec()}))
            .unwrap();
        defaults::default_replica_set(&mut rs);
        assert!(validate_replica_set(&rs).is_empty());
    }

    #[test]
    fn jobs() {
        let mut job: Job = serde_json::from_value(
            json!({"metadata": {"name": "pi", "namespace": "default", "uid": "u1"},
            "spec": {"template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}}}),
        )
        .unwrap();
        defaults::default_job(&mut job);
        defaults::generate_job_selector(&mut job);
        assert_eq!(
            messages(validate_job(&job)),
            vec!["spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""]
        );
        job.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .restart_policy = Some("Never".into());
        assert!(validate_job(&job).is_empty());
        let mut manual = job.clone();
        let spec = manual.spec.as_mut().unwrap();
        spec.manual_selector = Some(true);
        spec.selector = Some(LabelSelector {
            match_labels: Some([("app".to_string(), "x".to_string())].into()),
            ..Default::default()
        });
        assert_eq!(validate_job(&manual).len(), 1);
        assert_eq!(
            messages(validate_job_update(&manual, &job))[1],
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"x\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
        );
    }
}
