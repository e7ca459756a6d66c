//! NodeResourcesBalancedAllocation: prefers nodes where CPU and memory would be
//! used in the same proportion (score `(1 - standard deviation) * 100`).

use crate::cache::{NodeInfo, PodInfo};
use crate::framework::{CycleState, ScorePlugin, MAX_NODE_SCORE};

pub struct BalancedAllocation;

fn fraction(requested: i64, capacity: i64) -> f64 {
    if capacity <= 0 {
        return 1.0;
    }
    (requested as f64 / capacity as f64).min(1.0)
}

impl ScorePlugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }

    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let cpu = fraction(node.requested.milli_cpu + pod.requests.milli_cpu, node.allocatable.milli_cpu);
        let memory = fraction(node.requested.memory + pod.requests.memory, node.allocatable.memory);
        // The standard deviation of two values is half their distance.
        let deviation = (cpu - memory).abs() / 2.0;
        ((1.0 - deviation) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;

    #[test]
    fn balanced_use_scores_higher() {
        let cache = cache_with(vec![node("n1", "4", "4Gi", &[])]);
        let state = CycleState::default();
        let balanced = BalancedAllocation.score(&state, &info(pod("a", "2", "2Gi")), node_info(&cache, "n1"));
        let lopsided = BalancedAllocation.score(&state, &info(pod("b", "4", "0")), node_info(&cache, "n1"));
        assert_eq!(balanced, 100);
        assert_eq!(lopsided, 50);
    }
}
