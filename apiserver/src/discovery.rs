//! Discovery: `/api`, `/apis` and the per group-version resource lists, legacy
//! or aggregated (apidiscovery.k8s.io/v2) as the Accept header asks.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::server::SharedState;

/// The exact Content-Type of aggregated discovery; kubectl reads any other as legacy.
const AGGREGATED_CONTENT_TYPE: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

fn wants_aggregated(headers: &HeaderMap) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    accept.split(',').any(|media| {
        let media = media.replace(' ', "");
        media.contains("g=apidiscovery.k8s.io") && media.contains("v=v2") && media.contains("as=APIGroupDiscoveryList")
    })
}

fn json(value: Value) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

/// `GET /api`.
pub async fn core_versions(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    if wants_aggregated(&headers) {
        return aggregated(&state, true);
    }
    json(json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    }))
}

/// `GET /apis`.
pub async fn groups(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    if wants_aggregated(&headers) {
        return aggregated(&state, false);
    }
    let groups: Vec<Value> = named_groups(&state)
        .into_iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> =
                versions.iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect();
            json!({"name": group, "versions": versions, "preferredVersion": versions[0]})
        })
        .collect();
    json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
}

/// The named groups (all but core) with their versions, in registry order.
fn named_groups(state: &SharedState) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for (group, version) in state.registry.group_versions().into_iter().filter(|(g, _)| !g.is_empty()) {
        match groups.iter_mut().find(|(name, _)| *name == group) {
            Some((_, versions)) => versions.push(version),
            None => groups.push((group, vec![version])),
        }
    }
    groups
}

fn aggregated(state: &SharedState, core: bool) -> Response {
    let mut items = Vec::new();
    let mut group_names: Vec<String> = if core { vec![String::new()] } else { Vec::new() };
    if !core {
        group_names.extend(named_groups(state).into_iter().map(|(g, _)| g));
    }
    for group in group_names {
        let versions: Vec<Value> = state
            .registry
            .group_versions()
            .into_iter()
            .filter(|(g, _)| *g == group)
            .map(|(_, version)| {
                let resources: Vec<Value> = state
                    .registry
                    .in_group_version(&group, &version)
                    .map(|resource| {
                        let subresources: Vec<Value> = resource
                            .subresources
                            .iter()
                            .map(|sub| {
                                json!({
                                    "subresource": sub.name,
                                    "responseKind": {"group": sub.group, "version": sub.version, "kind": sub.kind},
                                    "verbs": sub.verbs,
                                })
                            })
                            .collect();
                        json!({
                            "resource": resource.plural,
                            "responseKind": {"group": resource.group, "version": resource.version, "kind": resource.kind},
                            "scope": if resource.namespaced { "Namespaced" } else { "Cluster" },
                            "singularResource": resource.singular,
                            "verbs": resource.verbs,
                            "shortNames": resource.short_names,
                            "categories": resource.categories,
                            "subresources": subresources,
                        })
                    })
                    .collect();
                json!({"version": version, "resources": resources, "freshness": "Current"})
            })
            .collect();
        items.push(json!({"metadata": {"name": group}, "versions": versions}));
    }
    let body = json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items});
    (StatusCode::OK, [(header::CONTENT_TYPE, AGGREGATED_CONTENT_TYPE)], body.to_string()).into_response()
}

/// `GET /api/v1` or `/apis/<group>/<version>`: an `APIResourceList`.
pub fn resource_list(state: &SharedState, group: &str, version: &str) -> Response {
    let mut resources = Vec::new();
    for resource in state.registry.in_group_version(group, version) {
        resources.push(json!({
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": resource.verbs,
            "shortNames": resource.short_names,
            "categories": resource.categories,
        }));
        for sub in &resource.subresources {
            let mut entry = json!({
                "name": format!("{}/{}", resource.plural, sub.name),
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": sub.kind,
                "verbs": sub.verbs,
            });
            if sub.group != resource.group || sub.version != resource.version {
                entry["group"] = json!(sub.group);
                entry["version"] = json!(sub.version);
            }
            resources.push(entry);
        }
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    json(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}))
}
