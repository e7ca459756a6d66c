//! NodePorts: a host port can be taken once per node (per protocol and address).

use crate::cache::{NodeInfo, PodInfo};
use crate::framework::{CycleState, FilterPlugin, Reasons};

pub struct NodePorts;

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reasons> {
        let conflict = pod.host_ports.iter().any(|wanted| node.used_ports.iter().any(|used| used.conflicts(wanted)));
        if conflict {
            return Err(vec!["node(s) didn't have free ports for the requested pod ports".into()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;
    use k8s_openapi::api::core::v1::ContainerPort;
    use std::sync::Arc;

    fn with_host_port(name: &str, port: i32) -> crate::cache::PodInfo {
        let mut p = pod(name, "0", "0");
        p.spec.as_mut().unwrap().containers[0].ports =
            Some(vec![ContainerPort { container_port: 80, host_port: Some(port), ..Default::default() }]);
        info(p)
    }

    #[test]
    fn a_taken_host_port_filters_the_node() {
        let mut cache = cache_with(vec![node("n1", "1", "1Gi", &[])]);
        cache.add_bound_pod(Arc::new(with_host_port("a", 8080)), "n1");
        let state = CycleState::default();
        assert!(NodePorts.filter(&state, &with_host_port("b", 8080), node_info(&cache, "n1")).is_err());
        assert!(NodePorts.filter(&state, &with_host_port("c", 8081), node_info(&cache, "n1")).is_ok());
    }
}
