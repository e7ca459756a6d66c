//! The `pod-template-hash`: names a Deployment's ReplicaSet after its pod template.
//!
//! Kubernetes hashes its Go structs' debug dump with FNV-1a (32 bit) and encodes the
//! decimal hash with `rand.SafeEncodeString`. A Go struct dump cannot be reproduced
//! byte for byte here, so r8s hashes the template's canonical JSON instead (keys in
//! a fixed order, as serde_json writes them); the value has Kubernetes' form and
//! alphabet and, like Kubernetes', changes exactly when the template or the
//! collision count does.

use k8s_openapi::api::core::v1::PodTemplateSpec;

/// The characters `rand.SafeEncodeString` uses: no vowels, no look-alikes.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193))
}

fn safe_encode(text: &str) -> String {
    text.bytes().map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char).collect()
}

/// The hash of `template` (without any `pod-template-hash` label) and the
/// Deployment's `collisionCount`.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if let Some(count) = collision_count {
        bytes.extend_from_slice(&count.to_le_bytes());
    }
    safe_encode(&fnv1a32(&bytes).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: vec![Container { name: "web".into(), image: Some(image.into()), ..Default::default() }],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn the_hash_follows_the_template_and_the_collision_count() {
        let first = pod_template_hash(&template("nginx:1"), None);
        assert_eq!(first, pod_template_hash(&template("nginx:1"), None));
        assert_ne!(first, pod_template_hash(&template("nginx:2"), None));
        assert_ne!(first, pod_template_hash(&template("nginx:1"), Some(1)));
        assert!(first.bytes().all(|b| SAFE_ALPHABET.contains(&b)));
    }
}
