//! `r8sctl apply` and `r8sctl create`.
//!
//! apply is client-side apply, as kubectl does it: the configuration the user
//! applied is kept in the `kubectl.kubernetes.io/last-applied-configuration`
//! annotation, and the next apply sends a three-way patch (last applied, new
//! configuration, live object), so fields others set are kept and fields the
//! user removed from the file are removed. Because the annotation is the same as
//! kubectl's, r8sctl and kubectl can take turns on one object.

use std::path::PathBuf;

use http::Method;
use serde_json::{Map, Value};

use crate::session::{Session, JSON, MERGE_PATCH};
use crate::targets::{self, Target};

pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

#[derive(clap::Args)]
pub struct FileArgs {
    /// A manifest file, a directory of them, or - for standard input.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
}

pub async fn apply(session: &Session, args: FileArgs) -> anyhow::Result<()> {
    for (target, object) in targets::from_files(session, &args.files).await? {
        if target.name.is_empty() {
            anyhow::bail!("error from {}: resource name may not be empty", target.resource.kind);
        }
        let outcome = apply_one(session, &target, object).await?;
        println!("{} {outcome}", target.display());
    }
    Ok(())
}

async fn apply_one(session: &Session, target: &Target, mut object: Value) -> anyhow::Result<&'static str> {
    // kubectl records the namespace it applied to, so do the same.
    if let (Some(ns), Some(metadata)) = (&target.namespace, object.get_mut("metadata").and_then(Value::as_object_mut)) {
        metadata.insert("namespace".into(), Value::String(ns.clone()));
    }
    let desired = with_last_applied(object)?;
    let collection = target.resource.collection_path(target.namespace.as_deref());
    let Some(live) = session.get_opt(&target.path()).await? else {
        session
            .send_json(Method::POST, &format!("{collection}?fieldManager=kubectl-client-side-apply"), JSON, &desired)
            .await?;
        return Ok("created");
    };
    let last = live
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str::<Value>(s).ok());
    let patch = three_way_merge_patch(last.as_ref(), &desired, &live);
    if patch.as_object().is_none_or(Map::is_empty) {
        return Ok("unchanged");
    }
    session
        .send_json(
            Method::PATCH,
            &format!("{}?fieldManager=kubectl-client-side-apply", target.path()),
            MERGE_PATCH,
            &patch,
        )
        .await?;
    Ok("configured")
}

/// The object with the annotation that records it, byte for byte as kubectl
/// writes it (so that the two tools see each other's applies as unchanged): the
/// object's JSON with keys sorted, `metadata.annotations` present but without
/// this annotation, then a newline.
fn with_last_applied(mut object: Value) -> anyhow::Result<Value> {
    let annotations = object
        .as_object_mut()
        .ok_or_else(|| anyhow::anyhow!("a manifest document must be an object"))?
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| anyhow::anyhow!("metadata must be an object"))?
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if annotations.is_null() {
        *annotations = Value::Object(Map::new());
    }
    let annotations = annotations
        .as_object_mut()
        .ok_or_else(|| anyhow::anyhow!("metadata.annotations must be an object"))?;
    annotations.remove(LAST_APPLIED);
    let record = format!("{}\n", serde_json::to_string(&object)?);
    if let Some(map) = object.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        map.insert(LAST_APPLIED.into(), Value::String(record));
    }
    Ok(object)
}

/// A JSON merge patch that turns `live` into what `desired` says, deleting what
/// `last` (the previous apply) had and `desired` no longer has.
///
/// Merge patch replaces lists whole, and the server fills defaults into list
/// items (a container's `imagePullPolicy`), so a list is compared with the last
/// applied one, not the live one: it is sent only when the user changed it.
pub fn three_way_merge_patch(last: Option<&Value>, desired: &Value, live: &Value) -> Value {
    let mut patch = Map::new();
    if let Some(desired) = desired.as_object() {
        for (key, want) in desired {
            let have = live.get(key);
            match (want, have) {
                (Value::Object(_), Some(have @ Value::Object(_))) => {
                    let sub = three_way_merge_patch(last.and_then(|l| l.get(key)), want, have);
                    if sub.as_object().is_some_and(|m| !m.is_empty()) {
                        patch.insert(key.clone(), sub);
                    }
                }
                (Value::Array(_), _) if last.and_then(|l| l.get(key)) == Some(want) => {}
                _ if have != Some(want) => {
                    patch.insert(key.clone(), want.clone());
                }
                _ => {}
            }
        }
        for key in last.and_then(Value::as_object).into_iter().flat_map(Map::keys) {
            if !desired.contains_key(key) && live.get(key).is_some() {
                patch.insert(key.clone(), Value::Null);
            }
        }
    }
    Value::Object(patch)
}

pub async fn create(session: &Session, args: FileArgs) -> anyhow::Result<()> {
    for (target, object) in targets::from_files(session, &args.files).await? {
        let collection = target.resource.collection_path(target.namespace.as_deref());
        let created = session
            .send_json(Method::POST, &format!("{collection}?fieldManager=kubectl-create"), JSON, &object)
            .await?;
        let name = created["metadata"]["name"].as_str().unwrap_or(&target.name);
        println!("{}/{name} created", target.resource.type_name());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_first_apply_records_the_configuration() {
        let object = json!({"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
        let applied = with_last_applied(object).unwrap();
        let record = applied["metadata"]["annotations"][LAST_APPLIED].as_str().unwrap();
        assert_eq!(record, "{\"data\":{\"a\":\"1\"},\"kind\":\"ConfigMap\",\"metadata\":{\"annotations\":{},\"name\":\"c\"}}\n");
    }

    #[test]
    fn the_patch_changes_what_changed_and_keeps_what_others_set() {
        let last = json!({"metadata": {"name": "web", "labels": {"app": "web", "old": "x"}}, "spec": {"replicas": 2}});
        let desired = json!({"metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {"replicas": 3}});
        let live = json!({
            "metadata": {"name": "web", "uid": "u1", "labels": {"app": "web", "old": "x", "team": "a"}},
            "spec": {"replicas": 2, "paused": false},
            "status": {"replicas": 2}
        });
        let patch = three_way_merge_patch(Some(&last), &desired, &live);
        assert_eq!(patch, json!({"metadata": {"labels": {"old": null}}, "spec": {"replicas": 3}}));
    }

    #[test]
    fn an_unchanged_configuration_needs_no_patch() {
        let desired = json!({"metadata": {"name": "web"}, "data": {"a": "1"}});
        let live = json!({"metadata": {"name": "web", "resourceVersion": "5"}, "data": {"a": "1"}});
        assert_eq!(three_way_merge_patch(Some(&desired), &desired, &live), json!({}));
    }

    #[test]
    fn lists_are_sent_whole_only_when_the_user_changed_them() {
        let last = json!({"spec": {"containers": [{"name": "a", "image": "busybox:1"}]}});
        let desired = json!({"spec": {"containers": [{"name": "a", "image": "busybox:2"}]}});
        let live = json!({"spec": {"containers": [{"name": "a", "image": "busybox:1", "imagePullPolicy": "IfNotPresent"}]}});
        assert_eq!(three_way_merge_patch(Some(&last), &desired, &live), desired);
        assert_eq!(three_way_merge_patch(Some(&last), &last, &live), json!({}));
    }
}
