//! Facts read off Node objects that several components need.

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;

/// The node's IPv4 pod CIDRs (`spec.podCIDRs`, and `spec.podCIDR`, which
/// Kubernetes keeps equal to the first), sorted, each once; unparsable
/// entries are skipped.
pub fn pod_cidrs(node: &Node) -> Vec<Ipv4Net> {
    let spec = node.spec.as_ref();
    let listed = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    let single = spec.and_then(|s| s.pod_cidr.clone());
    let mut cidrs: Vec<Ipv4Net> = listed.into_iter().chain(single).filter_map(|c| c.parse().ok()).collect();
    cidrs.sort();
    cidrs.dedup();
    cidrs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_fields_once() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n"},
            "spec": {"podCIDR": "10.244.3.0/24", "podCIDRs": ["10.244.3.0/24", "fd00::/64", "junk"]}
        }))
        .unwrap();
        assert_eq!(pod_cidrs(&node), vec!["10.244.3.0/24".parse::<Ipv4Net>().unwrap()]);
        let bare: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": "n"}})).unwrap();
        assert!(pod_cidrs(&bare).is_empty());
    }
}
