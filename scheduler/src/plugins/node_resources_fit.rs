//! NodeResourcesFit: the pod's requests must fit in what the node has left
//! (allocatable minus what placed pods request); scores with the LeastAllocated
//! strategy (more room left scores higher).

use crate::cache::{NodeInfo, PodInfo};
use crate::framework::{CycleState, FilterPlugin, Reasons, ScorePlugin, MAX_NODE_SCORE};

pub struct NodeResourcesFit;

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reasons> {
        let mut reasons = Vec::new();
        if node.pods.len() as i64 + 1 > node.allowed_pods {
            reasons.push("Too many pods".to_string());
        }
        let (want, have, used) = (&pod.requests, &node.allocatable, &node.requested);
        let short = |wanted: i64, allocatable: i64, requested: i64| wanted > 0 && wanted > allocatable - requested;
        if short(want.milli_cpu, have.milli_cpu, used.milli_cpu) {
            reasons.push("Insufficient cpu".into());
        }
        if short(want.memory, have.memory, used.memory) {
            reasons.push("Insufficient memory".into());
        }
        if short(want.ephemeral_storage, have.ephemeral_storage, used.ephemeral_storage) {
            reasons.push("Insufficient ephemeral-storage".into());
        }
        for (name, wanted) in &want.scalar {
            let allocatable = have.scalar.get(name).copied().unwrap_or(0);
            let requested = used.scalar.get(name).copied().unwrap_or(0);
            if short(*wanted, allocatable, requested) {
                reasons.push(format!("Insufficient {name}"));
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
}

/// `(capacity - requested) * 100 / capacity`, zero when it does not fit.
pub fn least_allocated(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

impl ScorePlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    /// CPU and memory weigh the same.
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let cpu = least_allocated(node.nonzero_requested.0 + pod.nonzero.0, node.allocatable.milli_cpu);
        let memory = least_allocated(node.nonzero_requested.1 + pod.nonzero.1, node.allocatable.memory);
        (cpu + memory) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;
    use std::sync::Arc;

    #[test]
    fn requests_must_fit_in_what_is_left() {
        let mut cache = cache_with(vec![node("n1", "2", "4Gi", &[])]);
        cache.add_bound_pod(Arc::new(info(pod("a", "1500m", "1Gi"))), "n1");
        let state = CycleState::default();
        assert!(NodeResourcesFit.filter(&state, &info(pod("b", "500m", "1Gi")), node_info(&cache, "n1")).is_ok());
        assert_eq!(
            NodeResourcesFit.filter(&state, &info(pod("c", "600m", "8Gi")), node_info(&cache, "n1")),
            Err(vec!["Insufficient cpu".into(), "Insufficient memory".into()])
        );
    }

    #[test]
    fn emptier_nodes_score_higher() {
        let mut cache = cache_with(vec![node("busy", "4", "8Gi", &[]), node("idle", "4", "8Gi", &[])]);
        cache.add_bound_pod(Arc::new(info(pod("a", "2", "4Gi"))), "busy");
        let state = CycleState::default();
        let pod = info(pod("b", "1", "1Gi"));
        let busy = NodeResourcesFit.score(&state, &pod, node_info(&cache, "busy"));
        let idle = NodeResourcesFit.score(&state, &pod, node_info(&cache, "idle"));
        assert!(idle > busy, "{idle} > {busy}");
        assert_eq!(idle, (75 + 87) / 2);
    }
}
