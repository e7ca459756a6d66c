//! Validation with Kubernetes' field paths and messages. Each `validate_*`
//! expects a defaulted object (Kubernetes validates after defaulting) and
//! returns every problem found, empty when the object is valid.

mod core;
mod field;
mod meta;
pub mod names;
mod pod;
pub mod scheduling;
mod service;
mod workloads;

pub use self::core::{
    validate_config_map, validate_config_map_update, validate_endpoints, validate_endpoints_update,
    validate_event, validate_event_update, validate_lease, validate_lease_update,
    validate_namespace, validate_namespace_update, validate_node, validate_node_update,
    validate_secret, validate_secret_update, validate_service_account,
    validate_service_account_update,
};
pub use field::{aggregate_message, go_quote, BadValue, ErrorKind, FieldError, Path};
pub use meta::{
    validate_annotations, validate_label_selector, validate_labels, validate_object_meta,
    validate_object_meta_update, Scope,
};
pub use pod::{validate_pod, validate_pod_spec, validate_pod_template_spec, validate_pod_update};
pub use scheduling::{validate_priority_class, validate_priority_class_update};
pub use service::{validate_service, validate_service_update};
pub use workloads::{
    validate_daemon_set, validate_daemon_set_update, validate_deployment,
    validate_deployment_update, validate_job, validate_job_update, validate_replica_set,
    validate_replica_set_update,
};

/// Kubernetes' 422 `Status` for an invalid object: `Deployment.apps "web" is invalid: [...]`,
/// with one cause per field error.
pub fn invalid_status(
    group: &str,
    kind: &str,
    name: &str,
    errors: &[FieldError],
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Status {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let message = if errors.is_empty() {
        format!("{qualified} {} is invalid", go_quote(name))
    } else {
        format!(
            "{qualified} {} is invalid: {}",
            go_quote(name),
            aggregate_message(errors)
        )
    };
    let causes = errors
        .iter()
        .map(|e| StatusCause {
            field: Some(e.path.to_string()),
            message: Some(e.body()),
            reason: Some(e.kind.cause_type().to_string()),
        })
        .collect();
    Status {
        code: Some(422),
        message: Some(message),
        reason: Some("Invalid".into()),
        status: Some("Failure".into()),
        details: Some(StatusDetails {
            group: Some(group.to_string()),
            kind: Some(kind.to_string()),
            name: Some(name.to_string()),
            causes: Some(causes),
            ..Default::default()
        }),
        metadata: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_status_reads_like_kubernetes() {
        let errs = vec![
            FieldError::required(&Path::new("spec").child("containers"), ""),
            FieldError::invalid(
                &Path::new("spec").child("replicas"),
                -1,
                "must be greater than or equal to 0",
            ),
        ];
        let status = invalid_status("apps", "Deployment", "web", &errs);
        assert_eq!(
            status.message.as_deref(),
            Some("Deployment.apps \"web\" is invalid: [spec.containers: Required value, spec.replicas: Invalid value: -1: must be greater than or equal to 0]")
        );
        let cause = &status.details.unwrap().causes.unwrap()[1];
        assert_eq!(cause.reason.as_deref(), Some("FieldValueInvalid"));
        assert_eq!(cause.field.as_deref(), Some("spec.replicas"));
        assert_eq!(
            cause.message.as_deref(),
            Some("Invalid value: -1: must be greater than or equal to 0")
        );
        let one = invalid_status("", "Pod", "web", &errs[..1]);
        assert_eq!(
            one.message.as_deref(),
            Some("Pod \"web\" is invalid: spec.containers: Required value")
        );
    }
}
