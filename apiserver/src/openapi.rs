//! OpenAPI v3: an index of group-versions and one document per group-version,
//! with a PATCH operation per kind that takes `fieldValidation` (which tells
//! kubectl to leave validation to the server) and the kinds' schemas.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::resources::ResourceType;
use crate::server::SharedState;
use crate::status::ApiError;
use crate::{model, patch};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3`.
pub async fn index(State(state): State<SharedState>) -> Response {
    let mut paths = Map::new();
    for (group, version) in state.registry.group_versions() {
        let path = gv_path(&group, &version);
        paths.insert(path.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{path}")}));
    }
    axum::Json(json!({"paths": paths})).into_response()
}

/// The field an object of the schema `component` is held in, as the patch
/// strategy table names it: containers, metadata, spec or status.
fn holding_field(component: &str) -> &'static str {
    let type_name = component.rsplit('.').next().unwrap_or(component);
    match type_name {
        "Container" | "EphemeralContainer" => "containers",
        "ObjectMeta" => "metadata",
        name if name.ends_with("Spec") => "spec",
        name if name.ends_with("Status") => "status",
        _ => "",
    }
}

/// Marks the lists that merge under a strategic merge patch, as Kubernetes'
/// OpenAPI does: kubectl computes `apply` patches from these marks, and a
/// list it believes atomic is sent whole (so removed elements would stay).
fn with_patch_meta(mut components: Map<String, Value>) -> Map<String, Value> {
    for (name, schema) in components.iter_mut() {
        let parent = holding_field(name);
        let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else { continue };
        for (field, property) in properties.iter_mut() {
            let Some((strategy, merge_key)) = patch::declared_patch_meta(parent, field) else { continue };
            if let Some(property) = property.as_object_mut() {
                property.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
                if let Some(key) = merge_key {
                    property.insert("x-kubernetes-patch-merge-key".into(), json!(key));
                }
            }
        }
    }
    components
}

fn patch_operation(resource: &ResourceType) -> Value {
    json!({
        "operationId": format!("patch{}", resource.kind),
        "parameters": [
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        ],
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {"group": resource.group, "version": resource.version, "kind": resource.kind},
    })
}

/// `GET /openapi/v3/api/v1`, `/openapi/v3/apis/<group>/<version>`.
pub async fn document(State(state): State<SharedState>, Path(path): Path<String>) -> Response {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version) = match segments.as_slice() {
        ["api", version] => ("", *version),
        ["apis", group, version] => (*group, *version),
        _ => return ApiError::no_route(&format!("/openapi/v3/{path}")).into_response(),
    };
    let mut paths = Map::new();
    for resource in state.registry.in_group_version(group, version) {
        let base = if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
        let item = if resource.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", resource.plural)
        } else {
            format!("{base}/{}/{{name}}", resource.plural)
        };
        paths.insert(item, json!({"patch": patch_operation(resource)}));
    }
    if paths.is_empty() {
        return ApiError::no_route(&format!("/openapi/v3/{path}")).into_response();
    }
    let document = json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0-r8s"},
        "paths": paths,
        "components": {"schemas": with_patch_meta(model::schemas(group, version))},
    });
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], document.to_string()).into_response()
}
