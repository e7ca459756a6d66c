//! NodeName: a pod that names its node fits only there.

use crate::cache::{NodeInfo, PodInfo};
use crate::framework::{CycleState, FilterPlugin, Reasons};

pub struct NodeName;

impl FilterPlugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reasons> {
        match pod.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            Some(wanted) if !wanted.is_empty() && wanted != node.name => {
                Err(vec!["node(s) didn't match the requested node name".into()])
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;

    #[test]
    fn only_the_named_node_fits() {
        let cache = cache_with(vec![node("n1", "1", "1Gi", &[]), node("n2", "1", "1Gi", &[])]);
        let mut named = pod("p", "0", "0");
        named.spec.as_mut().unwrap().node_name = Some("n2".into());
        let named = info(named);
        let state = CycleState::default();
        assert!(NodeName.filter(&state, &named, node_info(&cache, "n1")).is_err());
        assert!(NodeName.filter(&state, &named, node_info(&cache, "n2")).is_ok());
    }
}
