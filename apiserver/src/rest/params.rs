//! Query parameters of resource requests.

use crate::status::{ApiError, ApiResult};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Unknown fields are an error.
    Strict,
    /// Unknown fields are reported in `Warning` headers (Kubernetes' default).
    #[default]
    Warn,
    /// Unknown fields are dropped silently.
    Ignore,
}

#[derive(Clone, Debug, Default)]
pub struct Params {
    pub watch: bool,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub allow_watch_bookmarks: bool,
    /// A "watch list": the current state as ADDED events, then a bookmark
    /// annotated `k8s.io/initial-events-end`.
    pub send_initial_events: bool,
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    /// `includeObject` of Table requests: `None`, `Metadata` (default) or `Object`.
    pub include_object: Option<String>,
}

impl Params {
    pub fn parse(query: Option<&str>) -> ApiResult<Self> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
        let mut params = Params::default();
        for (key, value) in pairs {
            match key.as_str() {
                "watch" => params.watch = parse_bool(&key, &value)?,
                "labelSelector" => params.label_selector = Some(value),
                "fieldSelector" => params.field_selector = Some(value),
                "limit" => params.limit = Some(parse_number(&key, &value)?).filter(|limit| *limit > 0),
                "continue" => params.continue_token = Some(value).filter(|v| !v.is_empty()),
                "resourceVersion" => params.resource_version = Some(value).filter(|v| !v.is_empty()),
                "resourceVersionMatch" => params.resource_version_match = Some(value).filter(|v| !v.is_empty()),
                "timeoutSeconds" => params.timeout_seconds = Some(parse_number(&key, &value)?),
                "allowWatchBookmarks" => params.allow_watch_bookmarks = parse_bool(&key, &value)?,
                "sendInitialEvents" => params.send_initial_events = parse_bool(&key, &value)?,
                "dryRun" => params.dry_run = parse_dry_run(&value)?,
                "fieldValidation" => params.field_validation = parse_field_validation(&value)?,
                "gracePeriodSeconds" => params.grace_period_seconds = Some(parse_number(&key, &value)?),
                "propagationPolicy" => params.propagation_policy = Some(value),
                "includeObject" => params.include_object = Some(value),
                // fieldManager, pretty, timeout, orphanDependents, ...:
                // accepted and not needed.
                _ => {}
            }
        }
        Ok(params)
    }
}

fn parse_bool(key: &str, value: &str) -> ApiResult<bool> {
    match value {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(ApiError::bad_request(format!("invalid value for {key}: {other:?}"))),
    }
}

fn parse_number<T: std::str::FromStr>(key: &str, value: &str) -> ApiResult<T> {
    value.parse().map_err(|_| ApiError::bad_request(format!("invalid value for {key}: {value:?}")))
}

pub fn parse_dry_run(value: &str) -> ApiResult<bool> {
    match value {
        "All" => Ok(true),
        "" => Ok(false),
        other => Err(ApiError::bad_request(format!(
            "Invalid dryRun value: {other:?}: supported values: \"All\""
        ))),
    }
}

fn parse_field_validation(value: &str) -> ApiResult<FieldValidation> {
    match value {
        "Strict" => Ok(FieldValidation::Strict),
        "Warn" | "" => Ok(FieldValidation::Warn),
        "Ignore" => Ok(FieldValidation::Ignore),
        other => Err(ApiError::bad_request(format!(
            "fieldValidation parameter unsupported: {other}, must be one of Ignore, Warn, Strict"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubectl_queries() {
        let params = Params::parse(Some("limit=500&labelSelector=app%3Dweb&watch=true&fieldValidation=Strict&dryRun=All")).unwrap();
        assert_eq!(params.limit, Some(500));
        assert_eq!(params.label_selector.as_deref(), Some("app=web"));
        assert!(params.watch);
        assert!(params.dry_run);
        assert_eq!(params.field_validation, FieldValidation::Strict);
        assert!(Params::parse(Some("limit=x")).is_err());
        assert!(Params::parse(Some("fieldValidation=Loose")).is_err());
        assert!(Params::parse(None).unwrap().limit.is_none());
    }
}
