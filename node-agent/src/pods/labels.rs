//! The labels and annotations the kubelet puts on CRI sandboxes and containers,
//! by which a restarted agent finds its pods' containers again.

use std::collections::HashMap;

pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const POD_UID: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// An annotation, as the kubelet keeps it: the restart count survives the agent.
pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
pub const TERMINATION_GRACE: &str = "io.kubernetes.pod.terminationGracePeriod";

/// The labels of a pod's sandbox (its containers add [`CONTAINER_NAME`]).
pub fn pod_labels(namespace: &str, name: &str, uid: &str) -> HashMap<String, String> {
    HashMap::from([
        (POD_NAME.to_string(), name.to_string()),
        (POD_NAMESPACE.to_string(), namespace.to_string()),
        (POD_UID.to_string(), uid.to_string()),
    ])
}

/// The restart count an instance carries (0 when missing or garbled).
pub fn restart_count(annotations: &HashMap<String, String>) -> i32 {
    annotations.get(RESTART_COUNT).and_then(|count| count.parse().ok()).unwrap_or(0)
}
