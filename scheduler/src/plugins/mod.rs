//! Kubernetes' default plugins, one per file.

pub mod balanced_allocation;
pub mod default_preemption;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;

use std::sync::Arc;

use crate::framework::{FilterPlugin, Framework, PreFilterPlugin};

/// The default profile, with Kubernetes' default score weights.
pub fn default_framework() -> Framework {
    let unschedulable = Arc::new(node_unschedulable::NodeUnschedulable);
    let name = Arc::new(node_name::NodeName);
    let taints = Arc::new(taint_toleration::TaintToleration);
    let affinity = Arc::new(node_affinity::NodeAffinity);
    let ports = Arc::new(node_ports::NodePorts);
    let fit = Arc::new(node_resources_fit::NodeResourcesFit);
    let balanced = Arc::new(balanced_allocation::BalancedAllocation);
    let spread = Arc::new(pod_topology_spread::PodTopologySpread);
    let pod_affinity = Arc::new(inter_pod_affinity::InterPodAffinity);
    let pre_filter: Vec<Arc<dyn PreFilterPlugin>> = vec![affinity.clone(), spread.clone(), pod_affinity.clone()];
    let filter: Vec<Arc<dyn FilterPlugin>> = vec![
        unschedulable,
        name,
        taints.clone(),
        affinity.clone(),
        ports,
        fit.clone(),
        spread.clone(),
        pod_affinity.clone(),
    ];
    let preemption = Arc::new(default_preemption::DefaultPreemption { pre_filter: pre_filter.clone(), filter: filter.clone() });
    Framework {
        pre_filter,
        filter,
        post_filter: vec![preemption],
        pre_score: vec![spread.clone(), pod_affinity.clone()],
        score: vec![(taints, 3), (affinity, 2), (spread, 2), (pod_affinity, 2), (fit, 1), (balanced, 1)],
        reserve: Vec::new(),
    }
}

#[cfg(test)]
pub mod testing {
    //! Nodes and pods for plugin tests.
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Container, Node, NodeSpec, NodeStatus, Pod, PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use crate::cache::{Cache, NodeInfo, PodInfo};

    pub fn node(name: &str, cpu: &str, memory: &str, labels: &[(&str, &str)]) -> Node {
        let allocatable = BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory.into())),
            ("pods".to_string(), Quantity("110".into())),
        ]);
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus { allocatable: Some(allocatable.clone()), capacity: Some(allocatable), ..Default::default() }),
        }
    }

    pub fn pod(name: &str, cpu: &str, memory: &str) -> Pod {
        let requests = BTreeMap::from([("cpu".to_string(), Quantity(cpu.into())), ("memory".to_string(), Quantity(memory.into()))]);
        Pod {
            metadata: ObjectMeta { name: Some(name.into()), namespace: Some("default".into()), ..Default::default() },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements { requests: Some(requests), ..Default::default() }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }

    pub fn with_labels(mut pod: Pod, labels: &[(&str, &str)]) -> Pod {
        pod.metadata.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        pod
    }

    pub fn info(pod: Pod) -> PodInfo {
        PodInfo::new(Arc::new(pod))
    }

    pub fn cache_with(nodes: Vec<Node>) -> Cache {
        let mut cache = Cache::new();
        for node in nodes {
            cache.set_node(Arc::new(node));
        }
        cache
    }

    pub fn node_info<'a>(cache: &'a Cache, name: &str) -> &'a NodeInfo {
        cache.node(name).expect("node in cache")
    }
}
