//! Subresources beyond status: `pods/binding` and `scale` (as autoscaling/v1).

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::write::{apply_patch, save, UpdateError};
use super::{get_object, json_response, ApiRequest};
use crate::patch::{PatchType, PATCH_MEDIA_TYPES};
use crate::resources::ResourceType;
use crate::status::{success_status, ApiError, ApiResult, QualifiedResource};
use crate::objects;

const ATTEMPTS: usize = 5;

/// `POST pods/NAME/binding`: assigns the pod to a node, once.
pub async fn bind(request: ApiRequest) -> ApiResult<Response> {
    let binding = request.body_object()?;
    let name = request.target.object_name().to_string();
    let node = binding["target"]["name"].as_str().unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Binding",
            &name,
            vec![crate::status::Cause {
                reason: "FieldValueRequired".into(),
                message: "Required value".into(),
                field: "target.name".into(),
            }],
        ));
    }
    let binding_resource = QualifiedResource::new("", "pods/binding");
    for _ in 0..ATTEMPTS {
        let (kv, current) = get_object(&request, &name).await?;
        if let Some(bound) = current["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            return Err(ApiError::conflict(
                &binding_resource,
                &name,
                format!("pod {name} is already assigned to node \"{bound}\""),
            ));
        }
        if objects::is_deleting(&current) {
            return Err(ApiError::conflict(&binding_resource, &name, format!("pod {name} is being deleted, cannot be assigned to a host")));
        }
        let mut bound = current.clone();
        bound["spec"]["nodeName"] = json!(node);
        // The scheduled condition lives in the status, which `save` takes as given
        // when the current object has it too.
        let mut base = current.clone();
        let conditions = scheduled_conditions(&current);
        base["status"]["conditions"] = conditions.clone();
        bound["status"]["conditions"] = conditions;
        match save(&request, &kv, &base, bound).await {
            Ok(_) => return Ok(json_response(StatusCode::CREATED, &success_status(&binding_resource, &name, objects::uid(&current)))),
            Err(UpdateError::Raced) => continue,
            Err(error) => return Err(error.into_api_for(&binding_resource, &name)),
        }
    }
    Err(ApiError::modified(&binding_resource, &name))
}

fn scheduled_conditions(pod: &Value) -> Value {
    let mut conditions: Vec<Value> = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
    conditions.retain(|c| c["type"] != "PodScheduled");
    conditions.push(json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": objects::now_timestamp()}));
    Value::Array(conditions)
}

/// The autoscaling/v1 `Scale` of a deployment or replica set.
fn to_scale(object: &Value) -> Value {
    let metadata = &object["metadata"];
    let selector = object["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata["uid"],
            "resourceVersion": metadata["resourceVersion"],
            "creationTimestamp": metadata["creationTimestamp"],
        },
        "spec": {"replicas": object["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": object["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

/// GET, PUT and PATCH (merge patch) of `scale`.
pub async fn scale(verb: &str, request: ApiRequest) -> ApiResult<Response> {
    let name = request.target.object_name().to_string();
    let resource = request.target.resource.clone();
    if verb == "get" {
        let (_, current) = get_object(&request, &name).await?;
        return Ok(json_response(StatusCode::OK, &to_scale(&current)));
    }
    let patch_type = if verb == "patch" {
        Some(
            PatchType::from_content_type(&request.content_type())
                .filter(|t| *t != PatchType::Apply)
                .ok_or_else(|| ApiError::unsupported_media_type(PATCH_MEDIA_TYPES))?,
        )
    } else {
        None
    };
    let body = request.body_bytes();
    let scale_kind = ResourceType { group: "autoscaling".into(), kind: "Scale".into(), ..resource.clone() };
    for _ in 0..ATTEMPTS {
        let (kv, current) = get_object(&request, &name).await?;
        let scale = to_scale(&current);
        let desired = match patch_type {
            Some(patch_type) => apply_patch(&scale_kind, &name, patch_type, &scale, &body)?,
            None => serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid Scale: {e}")))?,
        };
        let wanted_version = objects::resource_version(&desired);
        if !wanted_version.is_empty() && wanted_version != objects::resource_version(&current) {
            return Err(ApiError::modified(&resource.qualified(), &name));
        }
        let Some(replicas) = desired["spec"]["replicas"].as_i64() else {
            return Err(ApiError::bad_request("spec.replicas of a Scale must be an integer"));
        };
        let mut scaled = current.clone();
        scaled["spec"]["replicas"] = json!(replicas);
        match save(&request, &kv, &current, scaled).await {
            Ok(saved) => return Ok(json_response(StatusCode::OK, &to_scale(&saved))),
            Err(UpdateError::Raced) => continue,
            Err(error) => return Err(error.into_api_for(&resource.qualified(), &name)),
        }
    }
    Err(ApiError::modified(&resource.qualified(), &name))
}
