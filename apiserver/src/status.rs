//! Kubernetes `Status` errors: the JSON body every failed request answers with,
//! built with the exact reasons, codes and messages Kubernetes uses (clients such
//! as kubectl print `message` and branch on `reason`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Which resource an error is about: `pods` in group "" or `deployments` in
/// "apps". Kubernetes names it `deployments.apps` in messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QualifiedResource {
    pub group: String,
    pub resource: String,
}

impl QualifiedResource {
    pub fn new(group: &str, resource: &str) -> Self {
        Self { group: group.to_string(), resource: resource.to_string() }
    }
}

impl std::fmt::Display for QualifiedResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// One reason an object is invalid, for a field path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub field: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Details {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<Cause>,
    #[serde(rename = "retryAfterSeconds", skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u32>,
}

impl Details {
    fn is_empty(&self) -> bool {
        *self == Details::default()
    }
}

/// A failed request, as a Kubernetes `Status`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason} ({code}): {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// Boxed: errors travel in every `Result` of the server.
    pub details: Box<Details>,
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The largest request body accepted (Kubernetes' limit is 3 MiB as well).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self { code, reason, message: message.into(), details: Box::default() }
    }

    fn about(mut self, resource: &QualifiedResource, name: &str) -> Self {
        self.details.name = name.to_string();
        self.details.group = resource.group.clone();
        self.details.kind = resource.resource.clone();
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn forbidden(resource: &QualifiedResource, name: &str, why: impl std::fmt::Display) -> Self {
        let message = if name.is_empty() {
            format!("{resource} is forbidden: {why}")
        } else {
            format!("{resource} \"{name}\" is forbidden: {why}")
        };
        Self::new(403, "Forbidden", message).about(resource, name)
    }

    /// `pods "nope" not found`.
    pub fn not_found(resource: &QualifiedResource, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{resource} \"{name}\" not found")).about(resource, name)
    }

    /// A path that names no resource at all.
    pub fn no_route(path: &str) -> Self {
        let mut error = Self::new(404, "NotFound", "the server could not find the requested resource");
        error.details.causes.push(Cause {
            reason: "UnexpectedServerResponse".into(),
            message: format!("404 page not found: {path}"),
            field: String::new(),
        });
        error
    }

    pub fn method_not_allowed(resource: &QualifiedResource, action: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("{action} is not supported on resources of kind \"{resource}\""),
        )
        .about(resource, "")
    }

    pub fn not_acceptable(accepted: &[&str]) -> Self {
        Self::new(
            406,
            "NotAcceptable",
            format!("only the following media types are accepted: {}", accepted.join(", ")),
        )
    }

    /// `pods "x" already exists`.
    pub fn already_exists(resource: &QualifiedResource, name: &str) -> Self {
        Self::new(409, "AlreadyExists", format!("{resource} \"{name}\" already exists"))
            .about(resource, name)
    }

    /// `Operation cannot be fulfilled on pods "x": <why>`.
    pub fn conflict(resource: &QualifiedResource, name: &str, why: impl std::fmt::Display) -> Self {
        Self::new(409, "Conflict", format!("Operation cannot be fulfilled on {resource} \"{name}\": {why}"))
            .about(resource, name)
    }

    /// The conflict an update with a stale resourceVersion gets.
    pub fn modified(resource: &QualifiedResource, name: &str) -> Self {
        Self::conflict(
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// A resourceVersion or continue token older than the store remembers.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Gone", message)
    }

    pub fn too_large(message: impl std::fmt::Display) -> Self {
        Self::new(413, "RequestEntityTooLarge", format!("Request entity too large: {message}"))
    }

    pub fn unsupported_media_type(accepted: &[&str]) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }

    /// `Pod "x" is invalid: [spec.containers: Required value, ...]`. `kind` is the
    /// kind qualified by its group (`Deployment.apps`), as Kubernetes writes it.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let qualified_kind = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let errors: Vec<String> = causes
            .iter()
            .map(|c| if c.field.is_empty() { c.message.clone() } else { format!("{}: {}", c.field, c.message) })
            .collect();
        let summary = match errors.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let mut error = Self::new(422, "Invalid", format!("{qualified_kind} \"{name}\" is invalid: {summary}"));
        error.details = Box::new(Details {
            name: name.to_string(),
            group: group.to_string(),
            kind: kind.to_string(),
            causes,
            retry_after_seconds: None,
        });
        error
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        let mut status = Self::new(500, "InternalError", format!("Internal error occurred: {error}"));
        status.details.causes.push(Cause {
            reason: String::new(),
            message: error.to_string(),
            field: String::new(),
        });
        status
    }

    /// A request that cannot be answered yet, such as a read at a future revision.
    pub fn timeout(message: impl Into<String>) -> Self {
        let mut error = Self::new(504, "Timeout", message);
        error.details.retry_after_seconds = Some(1);
        error
    }

    /// An error a node agent answered a proxied request with, passed on.
    pub fn upstream(code: u16, message: impl Into<String>) -> Self {
        let reason = match code {
            400 => "BadRequest",
            404 => "NotFound",
            _ => "InternalError",
        };
        let code = if (400..600).contains(&code) { code } else { 502 };
        Self::new(code, reason, message)
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The `Status` object, as it goes on the wire (also inside watch ERROR events).
    pub fn to_status(&self) -> serde_json::Value {
        let mut status = serde_json::json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !self.details.is_empty() {
            status["details"] = serde_json::to_value(&self.details).unwrap_or_default();
        }
        status
    }
}

/// The `Status` a successful delete of an already-gone object answers with.
pub fn success_status(resource: &QualifiedResource, name: &str, uid: &str) -> serde_json::Value {
    serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": resource.group, "kind": resource.resource, "uid": uid},
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status_code(), axum::Json(self.to_status())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_reads_like_kubernetes() {
        let error = ApiError::not_found(&QualifiedResource::new("", "pods"), "nope");
        let status = error.to_status();
        assert_eq!(status["message"], "pods \"nope\" not found");
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(status["code"], 404);
        assert_eq!(status["details"]["name"], "nope");
        assert_eq!(status["details"]["kind"], "pods");
        assert!(status["details"].get("group").is_none());
    }

    #[test]
    fn grouped_resources_are_qualified() {
        let error = ApiError::already_exists(&QualifiedResource::new("apps", "deployments"), "web");
        assert_eq!(error.message, "deployments.apps \"web\" already exists");
        assert_eq!(error.to_status()["details"]["group"], "apps");
    }

    #[test]
    fn stale_update_conflict_message() {
        let error = ApiError::modified(&QualifiedResource::new("", "pods"), "x");
        assert_eq!(
            error.message,
            "Operation cannot be fulfilled on pods \"x\": the object has been modified; please apply your changes to the latest version and try again"
        );
        assert_eq!(error.code, 409);
        assert_eq!(error.reason, "Conflict");
    }

    #[test]
    fn invalid_lists_every_cause() {
        let causes = vec![
            Cause { reason: "FieldValueRequired".into(), message: "Required value".into(), field: "spec.containers".into() },
            Cause { reason: "FieldValueInvalid".into(), message: "Invalid value: \"A\"".into(), field: "metadata.name".into() },
        ];
        let error = ApiError::invalid("", "Pod", "x", causes);
        assert_eq!(
            error.message,
            "Pod \"x\" is invalid: [spec.containers: Required value, metadata.name: Invalid value: \"A\"]"
        );
        let status = error.to_status();
        assert_eq!(status["details"]["causes"][0]["field"], "spec.containers");
        assert_eq!(status["details"]["kind"], "Pod");
        assert_eq!(status["code"], 422);

        let one = ApiError::invalid(
            "apps",
            "Deployment",
            "web",
            vec![Cause { reason: "FieldValueRequired".into(), message: "Required value".into(), field: "spec.selector".into() }],
        );
        assert_eq!(one.message, "Deployment.apps \"web\" is invalid: spec.selector: Required value");
    }

    #[test]
    fn other_codes() {
        let pods = QualifiedResource::new("", "pods");
        assert_eq!(ApiError::bad_request("x").code, 400);
        assert_eq!(ApiError::method_not_allowed(&pods, "watch").code, 405);
        assert_eq!(ApiError::expired("too old resource version: 1 (5)").reason, "Expired");
        assert_eq!(ApiError::gone("x").code, 410);
        assert_eq!(ApiError::too_large("limit is 3145728").code, 413);
        let unsupported = ApiError::unsupported_media_type(&["application/json"]);
        assert_eq!(unsupported.code, 415);
        assert!(unsupported.message.contains("accepted media types include: application/json"));
        let internal = ApiError::internal("boom");
        assert_eq!(internal.code, 500);
        assert_eq!(internal.message, "Internal error occurred: boom");
    }
}
