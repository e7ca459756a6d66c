//! NodeUnschedulable: cordoned nodes (`spec.unschedulable`) take only pods that
//! tolerate the `node.kubernetes.io/unschedulable` taint.

use k8s_openapi::api::core::v1::Taint;

use crate::cache::{NodeInfo, PodInfo};
use crate::framework::{CycleState, FilterPlugin, Reasons};
use crate::plugins::taint_toleration::tolerates;

pub struct NodeUnschedulable;

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reasons> {
        if !node.unschedulable {
            return Ok(());
        }
        let taint = Taint { key: "node.kubernetes.io/unschedulable".into(), effect: "NoSchedule".into(), ..Default::default() };
        if tolerates(pod, &taint) {
            return Ok(());
        }
        Err(vec!["node(s) were unschedulable".into()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;

    #[test]
    fn cordoned_nodes_are_filtered_out() {
        let mut cordoned = node("n1", "1", "1Gi", &[]);
        cordoned.spec.as_mut().unwrap().unschedulable = Some(true);
        let cache = cache_with(vec![cordoned, node("n2", "1", "1Gi", &[])]);
        let pod = info(pod("p", "0", "0"));
        let state = CycleState::default();
        assert_eq!(NodeUnschedulable.filter(&state, &pod, node_info(&cache, "n1")), Err(vec!["node(s) were unschedulable".into()]));
        assert!(NodeUnschedulable.filter(&state, &pod, node_info(&cache, "n2")).is_ok());
    }
}
