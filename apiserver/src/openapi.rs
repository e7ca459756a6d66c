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
use crate::model;

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

/// The name Kubernetes gives a kind's schema: `io.k8s.api.apps.v1.Deployment`.
fn schema_name(resource: &ResourceType) -> String {
    let package = match resource.group.as_str() {
        "" => "core",
        group => group.split('.').next().unwrap_or(group),
    };
    format!("io.k8s.api.{package}.{}.{}", resource.version, resource.kind)
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
    let mut schemas = Map::new();
    for resource in state.registry.in_group_version(group, version) {
        let base = if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
        let item = if resource.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", resource.plural)
        } else {
            format!("{base}/{}/{{name}}", resource.plural)
        };
        paths.insert(item, json!({"patch": patch_operation(resource)}));
        // Only a real schema goes in: kubectl computes apply patches from the
        // schema of a kind when it finds one, so a vague schema would be worse
        // than none (kubectl then uses its built-in types).
        if let Some(mut schema) = model::schema(resource) {
            schema["x-kubernetes-group-version-kind"] =
                json!([{"group": resource.group, "version": resource.version, "kind": resource.kind}]);
            schemas.insert(schema_name(resource), schema);
        }
    }
    if paths.is_empty() {
        return ApiError::no_route(&format!("/openapi/v3/{path}")).into_response();
    }
    let document = json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0-r8s"},
        "paths": paths,
        "components": {"schemas": schemas},
    });
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], document.to_string()).into_response()
}
