//! create, update (PUT) and patch, on the main resource and on `/status`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use store::{KeyValue, StoreError};

use super::params::FieldValidation;
use super::{get_object, json_response, store_error, ApiRequest};
use crate::patch::{self, PatchError, PatchType, PATCH_MEDIA_TYPES};
use crate::resources::ResourceType;
use crate::status::{ApiError, ApiResult, Cause, QualifiedResource};
use crate::model::{self, Write};
use crate::{allocator, objects};

/// Times a patch is re-applied when another writer got in between.
const PATCH_ATTEMPTS: usize = 5;

pub async fn create(request: ApiRequest) -> ApiResult<Response> {
    let mut object = request.body_object()?;
    let resource = request.target.resource.clone();
    check_type(&resource, &mut object)?;
    let namespace = request.target.namespace.clone();
    assign_namespace(&mut object, namespace.as_deref())?;
    assign_name(&mut object)?;
    let name = objects::name(&object).to_string();
    if let Some(namespace) = &namespace {
        ensure_namespace_accepts(&request, namespace, &name).await?;
    }
    let warnings = check_unknown_fields(&request, &object)?;
    stamp_new(&mut object)?;
    if resource.kind == "Pod" && resource.group.is_empty() {
        crate::priority::admit_pod(request.state.store.as_ref(), &mut object).await?;
    }
    model::admit(&resource, &mut object, Write::Create)?;

    if !request.params.dry_run {
        let store = request.state.store.as_ref();
        let taken = match resource.kind.as_str() {
            "Service" => allocator::allocate(store, &request.state.config.service_ranges, &mut object).await?,
            _ => Vec::new(),
        };
        let key = request.target.key(&name);
        let created = match objects::to_store_bytes(&object) {
            Ok(bytes) => store.create(&key, bytes).await.map_err(|error| match error {
                StoreError::AlreadyExists { .. } => ApiError::already_exists(&resource.qualified(), &name),
                other => store_error(other),
            }),
            Err(error) => Err(error),
        };
        let kv = match created {
            Ok(kv) => kv,
            Err(error) => {
                allocator::release_keys(store, &taken).await;
                return Err(error);
            }
        };
        objects::set_meta(&mut object, "resourceVersion", json!(kv.mod_revision.to_string()));
    }
    Ok(with_warnings(json_response(StatusCode::CREATED, &object), &warnings))
}

pub async fn update(request: ApiRequest) -> ApiResult<Response> {
    let mut object = request.body_object()?;
    let resource = request.target.resource.clone();
    check_type(&resource, &mut object)?;
    let name = request.target.object_name().to_string();
    let body_name = objects::name(&object);
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    assign_namespace(&mut object, request.target.namespace.as_deref())?;
    let warnings = check_unknown_fields(&request, &object)?;
    let (kv, current) = get_object(&request, &name).await?;
    check_resource_version(&resource, &object, &current)?;
    let saved = save(&request, &kv, &current, object).await.map_err(|e| e.into_api_for(&resource.qualified(), &name))?;
    Ok(with_warnings(json_response(StatusCode::OK, &saved), &warnings))
}

pub async fn patch(request: ApiRequest) -> ApiResult<Response> {
    let patch_type = PatchType::from_content_type(&request.content_type())
        .filter(|t| *t != PatchType::Apply)
        .ok_or_else(|| ApiError::unsupported_media_type(PATCH_MEDIA_TYPES))?;
    let body = request.body_bytes();
    let name = request.target.object_name().to_string();
    let resource = request.target.resource.clone();
    for _ in 0..PATCH_ATTEMPTS {
        let (kv, current) = get_object(&request, &name).await?;
        let patched = apply_patch(&resource, &name, patch_type, &current, &body)?;
        let warnings = check_unknown_fields(&request, &patched)?;
        check_resource_version(&resource, &patched, &current)?;
        let pinned = !objects::resource_version(&patched).is_empty()
            && objects::resource_version(&patched) != objects::resource_version(&current);
        match save(&request, &kv, &current, patched).await {
            Ok(saved) => return Ok(with_warnings(json_response(StatusCode::OK, &saved), &warnings)),
            Err(UpdateError::Raced) if !pinned => continue,
            Err(error) => return Err(error.into_api_for(&resource.qualified(), &name)),
        }
    }
    Err(ApiError::modified(&resource.qualified(), &name))
}

/// Applies a patch to an object; failures are the client's.
pub fn apply_patch(
    resource: &ResourceType,
    name: &str,
    patch_type: PatchType,
    current: &Value,
    body: &[u8],
) -> ApiResult<Value> {
    let mut patched = patch::apply(patch_type, current, body).map_err(|error| match error {
        PatchError::Malformed(message) => ApiError::bad_request(message),
        PatchError::Failed(message) => ApiError::invalid(
            &resource.group,
            &resource.kind,
            name,
            vec![Cause { reason: "FieldValueInvalid".into(), message, field: String::new() }],
        ),
    })?;
    if !patched.is_object() {
        return Err(ApiError::bad_request("the patch must leave an object"));
    }
    check_type(resource, &mut patched)?;
    if objects::name(&patched) != name {
        return Err(ApiError::bad_request("metadata.name cannot be changed by a patch"));
    }
    Ok(patched)
}

/// Why an update did not happen.
pub enum UpdateError {
    Api(ApiError),
    /// Another write got in between the read and this one.
    Raced,
}

impl From<ApiError> for UpdateError {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

impl UpdateError {
    pub fn into_api_for(self, resource: &QualifiedResource, name: &str) -> ApiError {
        match self {
            Self::Api(error) => error,
            Self::Raced => ApiError::modified(resource, name),
        }
    }
}

/// The strategy of a client's write to the request's path.
fn write_of<'a>(request: &ApiRequest, current: &'a Value) -> Write<'a> {
    match request.target.subresource.as_deref() {
        Some("status") => Write::Status(current),
        Some("finalize") => Write::Finalize(current),
        None => Write::Update(current),
        Some(_) => Write::System,
    }
}

/// Writes a client's `desired` over `current` (read as `kv`) with a
/// compare-and-swap, with the write strategy of the request's path.
pub async fn save(request: &ApiRequest, kv: &KeyValue, current: &Value, desired: Value) -> Result<Value, UpdateError> {
    let write = write_of(request, current);
    store_update(request, kv, current, desired, write).await
}

/// Writes `desired` over `current` (read as `kv`) with a compare-and-swap:
/// keeps what clients cannot change, runs the write strategy, and removes an
/// object whose deletion only waited for finalizers that are now gone.
pub async fn store_update(
    request: &ApiRequest,
    kv: &KeyValue,
    current: &Value,
    mut desired: Value,
    write: Write<'_>,
) -> Result<Value, UpdateError> {
    let resource = &request.target.resource;
    let name = objects::name(current).to_string();
    keep_system_metadata(current, &mut desired)?;
    model::admit(resource, &mut desired, write)?;
    let bytes = objects::to_store_bytes(&desired)?;
    if bytes == kv.value {
        return Ok(current.clone());
    }
    if request.params.dry_run {
        return Ok(desired);
    }
    let key = request.target.key(&name);
    let store = &request.state.store;
    if objects::may_be_removed(&desired) && resource.kind != "Namespace" {
        let (_, revision) = store.delete(&key, Some(kv.mod_revision)).await.map_err(race_or_error)?;
        after_removal(request, &desired).await;
        objects::set_meta(&mut desired, "resourceVersion", json!(revision.to_string()));
        return Ok(desired);
    }
    let written = store.update(&key, bytes, Some(kv.mod_revision)).await.map_err(race_or_error)?;
    objects::set_meta(&mut desired, "resourceVersion", json!(written.mod_revision.to_string()));
    Ok(desired)
}

/// Gives back what a removed object held (a Service's IP and ports).
pub async fn after_removal(request: &ApiRequest, object: &Value) {
    if request.target.resource.kind == "Service" {
        allocator::release(request.state.store.as_ref(), object).await;
    }
}

fn race_or_error(error: StoreError) -> UpdateError {
    match error {
        StoreError::Conflict { .. } | StoreError::NotFound { .. } => UpdateError::Raced,
        other => UpdateError::Api(store_error(other)),
    }
}

/// Metadata only the server sets survives any update.
fn keep_system_metadata(current: &Value, desired: &mut Value) -> ApiResult<()> {
    let current_meta = current.get("metadata").cloned().unwrap_or_default();
    let metadata = objects::metadata_mut(desired)?;
    for field in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "namespace", "name"] {
        match current_meta.get(field) {
            Some(value) => metadata.insert(field.to_string(), value.clone()),
            None => metadata.remove(field),
        };
    }
    Ok(())
}

/// 409 when the object names a resourceVersion that is not the current one.
fn check_resource_version(resource: &ResourceType, desired: &Value, current: &Value) -> ApiResult<()> {
    let wanted = objects::resource_version(desired);
    if !wanted.is_empty() && wanted != objects::resource_version(current) {
        return Err(ApiError::modified(&resource.qualified(), objects::name(current)));
    }
    Ok(())
}

/// Checks `kind` and `apiVersion` of a body against the path, filling them in
/// when absent.
fn check_type(resource: &ResourceType, object: &mut Value) -> ApiResult<()> {
    let api_version = resource.api_version();
    let Some(map) = object.as_object_mut() else {
        return Err(ApiError::bad_request("the body of the request must be a JSON object"));
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    let version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if (!kind.is_empty() && kind != resource.kind) || (!version.is_empty() && version != api_version) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({version}) does not match the expected API version ({api_version}) or the kind ({kind}) is not {}",
            resource.kind
        )));
    }
    map.insert("kind".into(), json!(resource.kind));
    map.insert("apiVersion".into(), json!(api_version));
    Ok(())
}

fn assign_namespace(object: &mut Value, namespace: Option<&str>) -> ApiResult<()> {
    let Some(namespace) = namespace else {
        // Cluster-scoped objects have no namespace.
        objects::metadata_mut(object)?.remove("namespace");
        return Ok(());
    };
    match objects::namespace(object) {
        Some(given) if given != namespace => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            objects::set_meta(object, "namespace", json!(namespace));
            Ok(())
        }
    }
}

/// `metadata.name`, or one generated from `metadata.generateName`.
fn assign_name(object: &mut Value) -> ApiResult<()> {
    if !objects::name(object).is_empty() {
        return Ok(());
    }
    if let Some(prefix) = objects::meta_str(object, "generateName").filter(|p| !p.is_empty()) {
        let name = objects::generate_name(prefix);
        objects::set_meta(object, "name", json!(name));
    }
    Ok(())
}

/// Objects can only be created in a namespace that exists and is not going away.
async fn ensure_namespace_accepts(request: &ApiRequest, namespace: &str, name: &str) -> ApiResult<()> {
    let namespaces = QualifiedResource::new("", "namespaces");
    let key = format!("/registry/namespaces/{namespace}");
    let kv = request
        .state
        .store
        .get(&key, None)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(&namespaces, namespace))?;
    let object = objects::from_kv(&kv)?;
    if objects::is_deleting(&object) {
        return Err(ApiError::forbidden(
            &request.target.resource.qualified(),
            name,
            format!("unable to create new content in namespace {namespace} because it is being terminated"),
        ));
    }
    Ok(())
}

/// Unknown fields, as `fieldValidation` wants them handled: an error under
/// Strict, warnings under Warn.
fn check_unknown_fields(request: &ApiRequest, object: &Value) -> ApiResult<Vec<String>> {
    let mode = request.params.field_validation;
    if mode == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let unknown: Vec<String> = model::unknown_fields(&request.target.resource, object)
        .into_iter()
        .map(|path| format!("unknown field \"{path}\""))
        .collect();
    if mode == FieldValidation::Strict && !unknown.is_empty() {
        return Err(ApiError::bad_request(format!("strict decoding error: {}", unknown.join(", "))));
    }
    Ok(unknown)
}

/// Bookkeeping of a new object: uid and creation time; nothing a client sent
/// about deletion or versions.
fn stamp_new(object: &mut Value) -> ApiResult<()> {
    let metadata = objects::metadata_mut(object)?;
    metadata.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    metadata.insert("creationTimestamp".into(), json!(objects::now_timestamp()));
    for field in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
        metadata.remove(field);
    }
    Ok(())
}

/// Adds one `Warning` header per warning, as Kubernetes does (code 299).
fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for warning in warnings {
        let text = format!("299 - \"{}\"", warning.replace('"', "\\\""));
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append("warning", value);
        }
    }
    response
}
