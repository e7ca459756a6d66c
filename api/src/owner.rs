//! Owner references and the controller reference (`metav1.GetControllerOf`, `NewControllerRef`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::Resource;

/// The owner reference marked `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// Whether the object's controller is the owner with this uid.
pub fn is_controlled_by(meta: &ObjectMeta, owner_uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == owner_uid)
}

/// A controller reference to `owner` (controller and blockOwnerDeletion set), as
/// controllers put on the objects they create. None when the owner has no name or uid yet.
pub fn controller_ref<K: Resource>(owner: &ObjectMeta) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: K::API_VERSION.to_string(),
        kind: K::KIND.to_string(),
        name: owner.name.clone().filter(|n| !n.is_empty())?,
        uid: owner.uid.clone().filter(|u| !u.is_empty())?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// Adds `reference` unless an owner with the same uid is there; a second controller is refused.
pub fn add_owner_reference(
    meta: &mut ObjectMeta,
    reference: OwnerReference,
) -> Result<(), OwnerError> {
    let refs = meta.owner_references.get_or_insert_with(Vec::new);
    if refs.iter().any(|r| r.uid == reference.uid) {
        return Ok(());
    }
    if reference.controller == Some(true) {
        if let Some(existing) = refs.iter().find(|r| r.controller == Some(true)) {
            return Err(OwnerError::AlreadyControlled {
                kind: existing.kind.clone(),
                name: existing.name.clone(),
            });
        }
    }
    refs.push(reference);
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnerError {
    #[error("object is already controlled by {kind} {name:?}")]
    AlreadyControlled { kind: String, name: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

    fn meta(name: &str, uid: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            uid: Some(uid.into()),
            ..Default::default()
        }
    }

    #[test]
    fn controller_references() {
        let reference = controller_ref::<ReplicaSet>(&meta("web-1", "u1")).unwrap();
        assert_eq!(
            (
                reference.api_version.as_str(),
                reference.kind.as_str(),
                reference.controller,
                reference.block_owner_deletion
            ),
            ("apps/v1", "ReplicaSet", Some(true), Some(true))
        );
        assert!(controller_ref::<ReplicaSet>(&ObjectMeta::default()).is_none());
        let mut pod = meta("web-1-x", "p1");
        add_owner_reference(&mut pod, reference.clone()).unwrap();
        add_owner_reference(&mut pod, reference).unwrap();
        assert_eq!(pod.owner_references.as_ref().unwrap().len(), 1);
        assert!(is_controlled_by(&pod, "u1"));
        assert!(!is_controlled_by(&pod, "u2"));
        let other = controller_ref::<Deployment>(&meta("web", "u2")).unwrap();
        assert_eq!(
            add_owner_reference(&mut pod, other)
                .unwrap_err()
                .to_string(),
            "object is already controlled by ReplicaSet \"web-1\""
        );
        assert_eq!(controller_of(&pod).unwrap().name, "web-1");
    }
}
