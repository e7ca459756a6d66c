//! The `scale` subresource: autoscaling/v1 `Scale` views of Deployments and ReplicaSets.

use k8s_openapi::api::autoscaling::v1::{Scale, ScaleSpec, ScaleStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::selector::Selector;
use crate::validation::{FieldError, Path};
use crate::Object;

fn scale_metadata(meta: &ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        creation_timestamp: meta.creation_timestamp.clone(),
        ..Default::default()
    }
}

fn build(
    meta: &ObjectMeta,
    spec_replicas: Option<i32>,
    status_replicas: Option<i32>,
    selector: &LabelSelector,
) -> Scale {
    let selector = Selector::from_label_selector(selector)
        .map(|s| s.to_string())
        .unwrap_or_default();
    Scale {
        metadata: scale_metadata(meta),
        spec: Some(ScaleSpec {
            replicas: Some(spec_replicas.unwrap_or(0)),
        }),
        status: Some(ScaleStatus {
            replicas: status_replicas.unwrap_or(0),
            selector: Some(selector),
        }),
    }
}

/// The Scale of a Deployment or ReplicaSet; None for kinds without `/scale`.
pub fn scale_of(object: &Object) -> Option<Scale> {
    match object {
        Object::Deployment(d) => {
            let spec = d.spec.as_ref()?;
            let status = d.status.as_ref().and_then(|s| s.replicas);
            Some(build(&d.metadata, spec.replicas, status, &spec.selector))
        }
        Object::ReplicaSet(rs) => {
            let spec = rs.spec.as_ref()?;
            let status = rs.status.as_ref().map(|s| s.replicas);
            Some(build(&rs.metadata, spec.replicas, status, &spec.selector))
        }
        _ => None,
    }
}

/// `spec.replicas` of a Scale sent by a client, checked as Kubernetes does.
pub fn requested_replicas(scale: &Scale) -> Result<i32, FieldError> {
    let replicas = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    if replicas < 0 {
        return Err(FieldError::invalid(
            &Path::new("spec").child("replicas"),
            replicas,
            "must be greater than or equal to 0",
        ));
    }
    Ok(replicas)
}

/// Sets the replicas of a Deployment or ReplicaSet; false for other kinds.
pub fn set_replicas(object: &mut Object, replicas: i32) -> bool {
    let spec_replicas = match object {
        Object::Deployment(d) => d.spec.as_mut().map(|s| &mut s.replicas),
        Object::ReplicaSet(rs) => rs.spec.as_mut().map(|s| &mut s.replicas),
        _ => None,
    };
    match spec_replicas {
        Some(field) => {
            *field = Some(replicas);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deployment_scale_round_trip() {
        let mut d = Object::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "u", "resourceVersion": "7", "labels": {"x": "y"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {}},
            "status": {"replicas": 1}}))
        .unwrap();
        let scale = scale_of(&d).unwrap();
        assert_eq!(
            serde_json::to_value(&scale).unwrap(),
            json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": "web", "namespace": "default", "uid": "u", "resourceVersion": "7"},
                "spec": {"replicas": 2}, "status": {"replicas": 1, "selector": "app=web"}})
        );
        let request: Scale =
            serde_json::from_value(json!({"spec": {"replicas": 5}, "metadata": {}})).unwrap();
        assert!(set_replicas(&mut d, requested_replicas(&request).unwrap()));
        assert_eq!(scale_of(&d).unwrap().spec.unwrap().replicas, Some(5));
        let negative: Scale =
            serde_json::from_value(json!({"spec": {"replicas": -1}, "metadata": {}})).unwrap();
        assert_eq!(
            requested_replicas(&negative).unwrap_err().to_string(),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        let mut pod = Object::from_value(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
        )
        .unwrap();
        assert!(scale_of(&pod).is_none());
        assert!(!set_replicas(&mut pod, 1));
    }
}
