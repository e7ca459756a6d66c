//! The three patch formats of `PATCH` requests, applied to JSON objects:
//! JSON patch (RFC 6902), JSON merge patch (RFC 7386) and Kubernetes' strategic
//! merge patch (what `kubectl apply` sends).

mod strategic;

use serde_json::Value;

pub use strategic::{declared_patch_meta, strategic_merge};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

/// The media types a `PATCH` may carry.
pub const PATCH_MEDIA_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

impl PatchType {
    /// Reads the `Content-Type` of a `PATCH` (parameters such as `charset` ignored).
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        match media_type.to_ascii_lowercase().as_str() {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" => Some(Self::Apply),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchError {
    #[error("{0}")]
    Malformed(String),
    /// A JSON patch `test` failed or an operation pointed at nothing.
    #[error("{0}")]
    Failed(String),
}

/// Applies `patch` to `original` and returns the patched object.
pub fn apply(patch_type: PatchType, original: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    match patch_type {
        PatchType::Json => {
            let operations: json_patch::Patch = serde_json::from_slice(patch)
                .map_err(|e| PatchError::Malformed(format!("invalid JSON patch: {e}")))?;
            let mut patched = original.clone();
            json_patch::patch(&mut patched, &operations).map_err(|e| PatchError::Failed(e.to_string()))?;
            Ok(patched)
        }
        PatchType::Merge => {
            let patch = parse_object(patch)?;
            let mut patched = original.clone();
            json_patch::merge(&mut patched, &patch);
            Ok(patched)
        }
        PatchType::Strategic => strategic_merge(original, &parse_object(patch)?),
        PatchType::Apply => Err(PatchError::Malformed("server-side apply is not supported".into())),
    }
}

fn parse_object(patch: &[u8]) -> Result<Value, PatchError> {
    let value: Value =
        serde_json::from_slice(patch).map_err(|e| PatchError::Malformed(format!("invalid JSON in patch: {e}")))?;
    if !value.is_object() {
        return Err(PatchError::Malformed("a merge patch must be a JSON object".into()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(patch_type: PatchType, original: Value, patch: Value) -> Result<Value, PatchError> {
        apply(patch_type, &original, patch.to_string().as_bytes())
    }

    #[test]
    fn content_types() {
        assert_eq!(PatchType::from_content_type("application/merge-patch+json; charset=utf-8"), Some(PatchType::Merge));
        assert_eq!(PatchType::from_content_type("application/json-patch+json"), Some(PatchType::Json));
        assert_eq!(PatchType::from_content_type("application/strategic-merge-patch+json"), Some(PatchType::Strategic));
        assert_eq!(PatchType::from_content_type("application/apply-patch+yaml"), Some(PatchType::Apply));
        assert_eq!(PatchType::from_content_type("application/json"), None);
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        // The examples of RFC 7386 section 3.
        let original = json!({"a": "b", "c": {"d": "e", "f": "g"}, "list": [1, 2]});
        let patched = run(PatchType::Merge, original, json!({"a": "z", "c": {"f": null}, "list": [3], "n": {"x": null}})).unwrap();
        assert_eq!(patched, json!({"a": "z", "c": {"d": "e"}, "list": [3], "n": {}}));
    }

    #[test]
    fn json_patch_follows_rfc_6902() {
        let original = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1, 2, 3]}});
        let patch = json!([
            {"op": "test", "path": "/metadata/labels/a", "value": "1"},
            {"op": "add", "path": "/metadata/labels/b", "value": "2"},
            {"op": "remove", "path": "/spec/list/0"},
            {"op": "replace", "path": "/spec/list/0", "value": 9},
            {"op": "add", "path": "/spec/list/-", "value": 4},
            {"op": "copy", "from": "/metadata/labels", "path": "/spec/copied"},
            {"op": "move", "from": "/metadata/labels/a", "path": "/metadata/labels/moved"}
        ]);
        let patched = run(PatchType::Json, original, patch).unwrap();
        assert_eq!(
            patched,
            json!({"metadata": {"labels": {"b": "2", "moved": "1"}}, "spec": {"list": [9, 3, 4], "copied": {"a": "1", "b": "2"}}})
        );
    }

    #[test]
    fn failed_json_patch_test_is_an_error() {
        let result = run(PatchType::Json, json!({"a": 1}), json!([{"op": "test", "path": "/a", "value": 2}]));
        assert!(matches!(result, Err(PatchError::Failed(_))));
        let result = run(PatchType::Json, json!({"a": 1}), json!([{"op": "remove", "path": "/nope"}]));
        assert!(matches!(result, Err(PatchError::Failed(_))));
        assert!(matches!(apply(PatchType::Json, &json!({}), b"{not json"), Err(PatchError::Malformed(_))));
        assert!(matches!(apply(PatchType::Merge, &json!({}), b"[1]"), Err(PatchError::Malformed(_))));
    }
}
