//! Kubernetes' Priority admission plugin: a new pod's `spec.priorityClassName`
//! (or the class marked `globalDefault`) becomes its `spec.priority` and
//! `spec.preemptionPolicy`; and the built-in system classes the API server
//! bootstraps.

use serde_json::{json, Value};
use store::{RangeRequest, Store, StoreError};

use api::validation::scheduling::SYSTEM_PRIORITY_CLASSES;

use crate::objects;
use crate::status::{ApiError, ApiResult, QualifiedResource};

const PREFIX: &str = "/registry/priorityclasses/";

/// Creates `system-node-critical` and `system-cluster-critical` if missing.
pub async fn bootstrap(store: &dyn Store) -> Result<(), StoreError> {
    for (name, value, description) in SYSTEM_PRIORITY_CLASSES {
        let class = json!({
            "kind": "PriorityClass",
            "apiVersion": "scheduling.k8s.io/v1",
            "metadata": {
                "name": name,
                "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": objects::now_timestamp(),
            },
            "value": value,
            "description": description,
            "preemptionPolicy": "PreemptLowerPriority",
        });
        let bytes = objects::to_store_bytes(&class).map_err(|e| StoreError::Internal(e.message))?;
        match store.create(&format!("{PREFIX}{name}"), bytes).await {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The class a pod names, or the default class (name, value, preemption policy);
/// with neither, priority 0 and no class.
async fn resolve(store: &dyn Store, name: &str) -> ApiResult<Option<Value>> {
    if !name.is_empty() {
        let kv = store.get(&format!("{PREFIX}{name}"), None).await.map_err(crate::rest::store_error)?;
        return kv.map(|kv| objects::from_kv(&kv)).transpose();
    }
    let classes = store
        .range(RangeRequest { prefix: PREFIX.into(), ..Default::default() })
        .await
        .map_err(crate::rest::store_error)?;
    let mut defaults = Vec::new();
    for kv in &classes.kvs {
        let class = objects::from_kv(kv)?;
        if class["globalDefault"] == json!(true) {
            defaults.push(class);
        }
    }
    // Several defaults (a race between writers): Kubernetes takes the lowest value.
    Ok(defaults.into_iter().min_by_key(|c| c["value"].as_i64().unwrap_or(0)))
}

/// Sets a new pod's priority from its class, as the Priority admission plugin
/// does: an unknown class, or a priority or preemption policy in the spec that
/// differs from the class's, is forbidden.
pub async fn admit_pod(store: &dyn Store, pod: &mut Value) -> ApiResult<()> {
    let pod_name = objects::name(pod).to_string();
    let forbidden = |why: String| ApiError::forbidden(&QualifiedResource::new("", "pods"), &pod_name, why);
    let wanted = pod["spec"]["priorityClassName"].as_str().unwrap_or_default().to_string();
    let class = resolve(store, &wanted).await?;
    if class.is_none() && !wanted.is_empty() {
        return Err(forbidden(format!("no PriorityClass with name {wanted} was found")));
    }
    let priority = class.as_ref().and_then(|c| c["value"].as_i64()).unwrap_or(0);
    let spec = pod.get_mut("spec").and_then(Value::as_object_mut).ok_or_else(|| ApiError::bad_request("pod without spec"))?;
    if let Some(given) = spec.get("priority").and_then(Value::as_i64) {
        if given != priority {
            return Err(forbidden(format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
            )));
        }
    }
    spec.insert("priority".into(), json!(priority));
    let Some(class) = class else { return Ok(()) };
    spec.insert("priorityClassName".into(), class["metadata"]["name"].clone());
    if let Some(policy) = class["preemptionPolicy"].as_str() {
        if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str).filter(|given| *given != policy) {
            return Err(forbidden(format!(
                "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
            )));
        }
        spec.insert("preemptionPolicy".into(), json!(policy));
    }
    Ok(())
}
