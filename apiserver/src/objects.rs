//! Reading and stamping the `metadata` of objects held as JSON values, and
//! turning store key-values into objects.

use serde_json::{Map, Value};
use store::KeyValue;

use crate::status::{ApiError, ApiResult};

/// A string field of `metadata`.
pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}

pub fn name(object: &Value) -> &str {
    meta_str(object, "name").unwrap_or("")
}

pub fn namespace(object: &Value) -> Option<&str> {
    meta_str(object, "namespace").filter(|ns| !ns.is_empty())
}

pub fn uid(object: &Value) -> &str {
    meta_str(object, "uid").unwrap_or("")
}

pub fn resource_version(object: &Value) -> &str {
    meta_str(object, "resourceVersion").unwrap_or("")
}

/// The object's labels (empty if none or malformed).
pub fn labels(object: &Value) -> Map<String, Value> {
    object
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

pub fn finalizers(object: &Value) -> Vec<String> {
    object
        .get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

pub fn is_deleting(object: &Value) -> bool {
    meta_str(object, "deletionTimestamp").is_some()
}

/// True once an object marked for deletion waits for nothing any more: no
/// finalizers and no grace period (a pod's grace period ends with a forced delete).
pub fn may_be_removed(object: &Value) -> bool {
    let grace = object["metadata"]["deletionGracePeriodSeconds"].as_i64().unwrap_or(0);
    is_deleting(object) && finalizers(object).is_empty() && grace == 0
}

/// `metadata`, created if missing. Errors if the body's metadata is not a map.
pub fn metadata_mut(object: &mut Value) -> ApiResult<&mut Map<String, Value>> {
    let Some(root) = object.as_object_mut() else {
        return Err(ApiError::bad_request("the body of the request must be a JSON object"));
    };
    let metadata = root.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    metadata
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

pub fn set_meta(object: &mut Value, field: &str, value: Value) {
    if let Ok(metadata) = metadata_mut(object) {
        metadata.insert(field.to_string(), value);
    }
}

/// RFC 3339 in UTC with seconds, as Kubernetes writes timestamps.
pub fn now_timestamp() -> String {
    timestamp(chrono::Utc::now())
}

pub fn timestamp(time: chrono::DateTime<chrono::Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The object a store key-value holds, with `resourceVersion` set to the
/// revision that last wrote it (the store value never carries it).
pub fn from_kv(kv: &KeyValue) -> ApiResult<Value> {
    from_bytes_at(&kv.value, kv.mod_revision)
}

/// The object in `bytes`, with `resourceVersion` set to `revision`.
pub fn from_bytes_at(bytes: &[u8], revision: i64) -> ApiResult<Value> {
    let mut object: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::internal(format!("corrupt object in the store: {e}")))?;
    set_meta(&mut object, "resourceVersion", Value::String(revision.to_string()));
    Ok(object)
}

/// The bytes the store keeps for an object: without `resourceVersion`.
pub fn to_store_bytes(object: &Value) -> ApiResult<bytes::Bytes> {
    let mut stored = object.clone();
    if let Ok(metadata) = metadata_mut(&mut stored) {
        metadata.remove("resourceVersion");
    }
    serde_json::to_vec(&stored).map(bytes::Bytes::from).map_err(ApiError::internal)
}

/// `generateName` plus five random characters from Kubernetes' alphabet
/// (no vowels, no look-alikes).
pub fn generate_name(prefix: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let suffix: String = (0..5).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    format!("{prefix}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn generated_names_use_the_kubernetes_alphabet() {
        let name = generate_name("web-");
        assert_eq!(name.len(), 9);
        assert!(name.starts_with("web-"));
        assert!(name[4..].chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn store_bytes_drop_the_resource_version_and_reads_restore_it() {
        let object = json!({"metadata": {"name": "a", "resourceVersion": "7"}, "spec": {}});
        let bytes = to_store_bytes(&object).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("resourceVersion"));
        let read = from_bytes_at(&bytes, 9).unwrap();
        assert_eq!(resource_version(&read), "9");
    }
}
