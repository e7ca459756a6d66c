//! The resource API: `/api/v1/...` and `/apis/<group>/<version>/...` paths,
//! parsed into a verb on a resource and dispatched to one module per job.

mod delete;
mod params;
mod proxy;
mod read;
mod stream;
mod subresources;
mod watch;
mod write;

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::resources::ResourceType;
use crate::server::SharedState;
use crate::status::{ApiError, ApiResult, MAX_BODY_BYTES};
use crate::{discovery, objects, table};

pub use params::Params;

/// What a request is about: a resource type, maybe in a namespace, maybe one
/// object by name, maybe one of its subresources.
#[derive(Clone, Debug)]
pub struct Target {
    pub resource: ResourceType,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl Target {
    pub fn key(&self, name: &str) -> String {
        self.resource.key(self.namespace.as_deref(), name)
    }

    /// The name of a request that needs one (routing only sends those here).
    pub fn object_name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
}

/// One parsed resource request.
pub struct ApiRequest {
    pub state: SharedState,
    pub target: Target,
    pub params: Params,
    pub headers: HeaderMap,
    /// The raw query, for what is passed on as it came (`pods/log`).
    pub query: String,
    /// The body, read in full (at most [`MAX_BODY_BYTES`]) before dispatch.
    pub body: bytes::Bytes,
    /// The client's side of a protocol switch (`pods/exec`), once answered 101.
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
}

impl ApiRequest {
    pub fn body_bytes(&self) -> bytes::Bytes {
        self.body.clone()
    }

    /// The body as a JSON (or YAML) object.
    pub fn body_object(&self) -> ApiResult<Value> {
        let bytes = &self.body;
        let content_type = self.content_type();
        let object: Value = if content_type.contains("yaml") {
            crate::model::decode_yaml(bytes).map_err(ApiError::bad_request)?
        } else {
            serde_json::from_slice(bytes)
                .map_err(|e| ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}")))?
        };
        if !object.is_object() {
            return Err(ApiError::bad_request("the body of the request must be a JSON object"));
        }
        Ok(object)
    }

    pub fn content_type(&self) -> String {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_ascii_lowercase()
    }

    /// True if the client asked for `Table`s (`kubectl get`).
    pub fn wants_table(&self) -> bool {
        let accept = self.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        accept.contains("as=Table") && accept.contains("g=meta.k8s.io")
    }

    /// An object or list in the form the client asked for (Table or JSON).
    pub fn render(&self, code: StatusCode, value: Value) -> ApiResult<Response> {
        let value = if self.wants_table() { table::render(&self.target.resource, &value, &self.params)? } else { value };
        Ok(json_response(code, &value))
    }
}

pub fn json_response(code: StatusCode, value: &Value) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

/// The entry point of every `/api/...` and `/apis/...` request.
pub async fn handle(State(state): State<SharedState>, request: Request) -> Response {
    let start = Instant::now();
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let parsed = parse_path(&state, &path);
    let (verb, resource, response) = match parsed {
        Ok(Route::Discovery { group, version }) => {
            ("get".to_string(), String::new(), discovery::resource_list(&state, &group, &version))
        }
        Ok(Route::Resource(target)) => {
            let target = *target;
            let resource = target.resource.plural.clone();
            let verb = verb_of(&parts.method, &target, parts.uri.query());
            let parsed = match Params::parse(parts.uri.query()) {
                Ok(params) => read_body(body).await.map(|body| (params, body)),
                Err(error) => Err(error),
            };
            let response = match parsed {
                Ok((params, body)) => {
                    let query = parts.uri.query().unwrap_or("").to_string();
                    let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
                    let request = ApiRequest { state: state.clone(), target, params, headers: parts.headers, query, body, upgrade };
                    dispatch(&verb, request).await.unwrap_or_else(IntoResponse::into_response)
                }
                Err(error) => error.into_response(),
            };
            (verb, resource, response)
        }
        Err(error) => (parts.method.as_str().to_ascii_lowercase(), String::new(), error.into_response()),
    };
    state.metrics.observe_request(&verb, &resource, response.status().as_u16(), start.elapsed());
    response
}

/// The whole body, or 413 past [`MAX_BODY_BYTES`].
async fn read_body(body: Body) -> ApiResult<bytes::Bytes> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::too_large(format!("limit is {MAX_BODY_BYTES}")))
}

enum Route {
    Discovery { group: String, version: String },
    Resource(Box<Target>),
}

/// Splits a path into group, version, and then namespace, resource, name and
/// subresource, by the registry.
fn parse_path(state: &SharedState, path: &str) -> ApiResult<Route> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::no_route(path)),
    };
    if rest.is_empty() {
        if state.registry.in_group_version(group, version).next().is_none() {
            return Err(ApiError::no_route(path));
        }
        return Ok(Route::Discovery { group: group.to_string(), version: version.to_string() });
    }
    let find = |plural: &str| state.registry.find(group, version, plural).cloned();
    let namespaced_target = match rest {
        ["namespaces", namespace, plural, tail @ ..] => find(plural)
            .filter(|resource| resource.namespaced)
            .map(|resource| (resource, Some(namespace.to_string()), tail)),
        _ => None,
    };
    let (resource, namespace, tail) = match namespaced_target {
        Some(found) => found,
        None => {
            let resource = find(rest[0]).ok_or_else(|| ApiError::no_route(path))?;
            (resource, None, &rest[1..])
        }
    };
    let (name, subresource) = match tail {
        [] => (None, None),
        [name] => (Some(name.to_string()), None),
        [name, sub] if resource.has_subresource(sub) => (Some(name.to_string()), Some(sub.to_string())),
        _ => return Err(ApiError::no_route(path)),
    };
    Ok(Route::Resource(Box::new(Target { resource, namespace, name, subresource })))
}

/// The Kubernetes verb of a request, as metrics and errors name it.
fn verb_of(method: &Method, target: &Target, query: Option<&str>) -> String {
    let watching = query.is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let verb = match (method.as_str(), target.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if watching => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unsupported",
    };
    verb.to_string()
}

async fn dispatch(verb: &str, request: ApiRequest) -> ApiResult<Response> {
    let target = &request.target;
    let resource = target.resource.qualified();
    if !target.resource.namespaced && target.namespace.is_some() {
        return Err(ApiError::no_route("namespaced path for a cluster-scoped resource"));
    }
    let main_verb_unsupported = target.subresource.is_none() && !target.resource.supports(verb);
    if main_verb_unsupported {
        return Err(ApiError::method_not_allowed(&resource, verb));
    }
    match (verb, target.subresource.as_deref()) {
        ("get", None | Some("status")) => read::get(request).await,
        ("get", Some("log")) => proxy::logs(request).await,
        ("get" | "create", Some("exec" | "attach")) => stream::stream(request).await,
        ("list", None) => read::list(request).await,
        ("watch", None) => watch::watch(request).await,
        ("create", None) if target.name.is_none() => write::create(request).await,
        ("create", Some("binding")) => subresources::bind(request).await,
        ("update", None | Some("status") | Some("finalize")) => write::update(request).await,
        ("patch", None | Some("status")) => write::patch(request).await,
        ("get" | "update" | "patch", Some("scale")) => subresources::scale(verb, request).await,
        ("delete", None) => delete::delete(request).await,
        ("deletecollection", None) => delete::delete_collection(request).await,
        _ => Err(ApiError::method_not_allowed(&resource, verb)),
    }
}

/// Reads one object, or 404.
pub async fn get_object(request: &ApiRequest, name: &str) -> ApiResult<(store::KeyValue, Value)> {
    let key = request.target.key(name);
    let kv = request
        .state
        .store
        .get(&key, None)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(&request.target.resource.qualified(), name))?;
    let object = objects::from_kv(&kv)?;
    Ok((kv, object))
}

/// A store failure that no handler expected, as a Kubernetes error.
pub fn store_error(error: store::StoreError) -> ApiError {
    use store::StoreError;
    match error {
        StoreError::Compacted { requested, compacted } => {
            ApiError::expired(format!("too old resource version: {requested} ({compacted})"))
        }
        StoreError::FutureRevision { requested, current } => ApiError::timeout(format!(
            "Too large resource version: {requested}, current: {current}"
        )),
        StoreError::TooLarge { .. } => ApiError::too_large(error),
        StoreError::Unavailable(message) => ApiError::service_unavailable(message),
        other => ApiError::internal(other),
    }
}
