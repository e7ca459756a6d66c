//! delete and deletecollection: preconditions, finalizers, graceful pod
//! deletion, propagation policies and namespace termination.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};
use store::{KeyValue, StoreError};

use super::params::parse_dry_run;
use super::write::{after_removal, store_update, UpdateError};
use super::{get_object, json_response, read, store_error, ApiRequest};
use crate::model::Write;
use crate::objects;
use crate::server::SharedState;
use crate::status::{ApiError, ApiResult};

/// The finalizer a Foreground deletion adds; the garbage collector removes it
/// once the dependents are gone.
const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// Pods whose spec says nothing wait this long, as in Kubernetes.
const DEFAULT_POD_GRACE_SECONDS: i64 = 30;
const DELETE_ATTEMPTS: usize = 5;
/// Namespaces Kubernetes refuses to delete.
const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// `DeleteOptions`, from the body or the query.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteOptions {
    grace_period_seconds: Option<i64>,
    propagation_policy: Option<String>,
    preconditions: Option<Preconditions>,
    #[serde(default)]
    dry_run: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Preconditions {
    uid: Option<String>,
    resource_version: Option<String>,
}

fn delete_options(request: &mut ApiRequest) -> ApiResult<DeleteOptions> {
    let body = request.body_bytes();
    let mut options: DeleteOptions = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    options.grace_period_seconds = options.grace_period_seconds.or(request.params.grace_period_seconds);
    options.propagation_policy = options.propagation_policy.or(request.params.propagation_policy.clone());
    for value in &options.dry_run {
        request.params.dry_run |= parse_dry_run(value)?;
    }
    if let Some(policy) = &options.propagation_policy {
        if !["Orphan", "Background", "Foreground"].contains(&policy.as_str()) {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: \"{policy}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
    }
    Ok(options)
}

pub async fn delete(mut request: ApiRequest) -> ApiResult<Response> {
    let options = delete_options(&mut request)?;
    let name = request.target.object_name().to_string();
    let resource = request.target.resource.qualified();
    for _ in 0..DELETE_ATTEMPTS {
        let (kv, current) = get_object(&request, &name).await?;
        match delete_one(&request, &options, kv, current).await {
            Ok((code, body)) => return Ok(json_response(code, &body)),
            Err(UpdateError::Raced) => continue,
            Err(error) => return Err(error.into_api_for(&resource, &name)),
        }
    }
    Err(ApiError::modified(&resource, &name))
}

pub async fn delete_collection(mut request: ApiRequest) -> ApiResult<Response> {
    let options = delete_options(&mut request)?;
    let page = read::list_page(&request).await?;
    let resource = request.target.resource.qualified();
    let mut deleted = Vec::new();
    for object in page.items {
        let name = objects::name(&object).to_string();
        let Some(kv) = request.state.store.get(&request.target.key(&name), None).await.map_err(store_error)? else {
            continue;
        };
        match delete_one(&request, &options, kv, object).await {
            Ok((_, body)) => deleted.push(body),
            Err(UpdateError::Raced) => {}
            Err(error) => return Err(error.into_api_for(&resource, &name)),
        }
    }
    let list = json!({
        "kind": format!("{}List", request.target.resource.kind),
        "apiVersion": request.target.resource.api_version(),
        "metadata": {"resourceVersion": page.revision.to_string()},
        "items": deleted,
    });
    Ok(json_response(StatusCode::OK, &list))
}

/// Deletes one object, or marks it for deletion when something has to happen
/// first (finalizers, a running pod's grace period, a namespace's contents).
async fn delete_one(
    request: &ApiRequest,
    options: &DeleteOptions,
    kv: KeyValue,
    current: Value,
) -> Result<(StatusCode, Value), UpdateError> {
    let resource = request.target.resource.clone();
    let name = objects::name(&current).to_string();
    check_preconditions(request, options, &current)?;

    let mut finalizers = objects::finalizers(&current);
    if options.propagation_policy.as_deref() == Some("Foreground") && !finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) {
        finalizers.push(FOREGROUND_FINALIZER.to_string());
    }
    let grace = match resource.kind.as_str() {
        "Pod" if is_bound(&current) => options.grace_period_seconds.unwrap_or_else(|| {
            current["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(DEFAULT_POD_GRACE_SECONDS)
        }),
        _ => 0,
    };
    let is_namespace = resource.kind == "Namespace";
    if is_namespace && PROTECTED_NAMESPACES.contains(&name.as_str()) {
        return Err(UpdateError::Api(ApiError::forbidden(&resource.qualified(), &name, "this namespace may not be deleted")));
    }
    if objects::is_deleting(&current) {
        // Only a forced delete (grace 0) hurries an object already on its way out.
        let forced = options.grace_period_seconds == Some(0) && finalizers.is_empty() && !is_namespace;
        if !forced {
            return Ok((StatusCode::OK, current));
        }
    }

    let waits = !finalizers.is_empty() || grace > 0 || is_namespace;
    if waits && !objects::is_deleting(&current) {
        let mut marked = current.clone();
        let deadline = chrono::Utc::now() + chrono::Duration::seconds(grace.max(0));
        objects::set_meta(&mut marked, "deletionTimestamp", json!(objects::timestamp(deadline)));
        objects::set_meta(&mut marked, "deletionGracePeriodSeconds", json!(grace.max(0)));
        if !finalizers.is_empty() {
            objects::set_meta(&mut marked, "finalizers", json!(finalizers));
        }
        if is_namespace {
            marked["status"] = json!({"phase": "Terminating"});
        }
        let saved = mark_deleting(request, &kv, marked).await?;
        if is_namespace && !request.params.dry_run {
            tokio::spawn(empty_namespace(request.state.clone(), name));
        }
        return Ok((StatusCode::OK, saved));
    }

    if request.params.dry_run {
        return Ok((StatusCode::OK, current));
    }
    let key = request.target.key(&name);
    let (_, revision) = request.state.store.delete(&key, Some(kv.mod_revision)).await.map_err(|error| match error {
        StoreError::Conflict { .. } | StoreError::NotFound { .. } => UpdateError::Raced,
        other => UpdateError::Api(store_error(other)),
    })?;
    after_removal(request, &current).await;
    let mut deleted = current;
    objects::set_meta(&mut deleted, "resourceVersion", json!(revision.to_string()));
    Ok((StatusCode::OK, deleted))
}

/// Writes the deletion marks, which clients could not set themselves.
async fn mark_deleting(request: &ApiRequest, kv: &KeyValue, marked: Value) -> Result<Value, UpdateError> {
    // The update keeps the current deletion fields, so give it the marks as current.
    let mut base = objects::from_kv(kv)?;
    for field in ["deletionTimestamp", "deletionGracePeriodSeconds"] {
        if let Some(value) = marked["metadata"].get(field) {
            objects::set_meta(&mut base, field, value.clone());
        }
    }
    // The marks are the server's own write: the status goes as marked.
    base["status"] = marked.get("status").cloned().unwrap_or(Value::Null);
    if base["status"].is_null() {
        if let Some(map) = base.as_object_mut() {
            map.remove("status");
        }
    }
    store_update(request, kv, &base, marked, Write::System).await
}

fn is_bound(pod: &Value) -> bool {
    pod["spec"]["nodeName"].as_str().is_some_and(|node| !node.is_empty())
}

fn check_preconditions(request: &ApiRequest, options: &DeleteOptions, current: &Value) -> ApiResult<()> {
    let Some(preconditions) = &options.preconditions else { return Ok(()) };
    let resource = request.target.resource.qualified();
    let name = objects::name(current);
    if let Some(uid) = &preconditions.uid {
        if uid != objects::uid(current) {
            return Err(ApiError::conflict(
                &resource,
                name,
                format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", objects::uid(current)),
            ));
        }
    }
    if let Some(version) = &preconditions.resource_version {
        if version != objects::resource_version(current) {
            return Err(ApiError::conflict(
                &resource,
                name,
                format!(
                    "Precondition failed: ResourceVersion in precondition: {version}, ResourceVersion in object meta: {}",
                    objects::resource_version(current)
                ),
            ));
        }
    }
    Ok(())
}

/// Deletes everything in a terminating namespace, then the namespace. Kubernetes
/// leaves this to the namespace controller; r8s does it here until it has one.
async fn empty_namespace(state: SharedState, namespace: String) {
    for resource in state.registry.all().iter().filter(|r| r.namespaced) {
        let prefix = resource.key_prefix(Some(&namespace));
        let request = store::RangeRequest { prefix, ..Default::default() };
        let Ok(response) = state.store.range(request).await else { continue };
        for kv in response.kvs {
            if let Err(error) = state.store.delete(&kv.key, None).await {
                tracing::warn!(key = kv.key, %error, "could not delete from a terminating namespace");
            } else if resource.kind == "Service" {
                if let Ok(service) = objects::from_kv(&kv) {
                    crate::allocator::release(state.store.as_ref(), &service).await;
                }
            }
        }
    }
    if let Err(error) = state.store.delete(&format!("/registry/namespaces/{namespace}"), None).await {
        tracing::warn!(namespace, %error, "could not remove a terminated namespace");
    }
}
