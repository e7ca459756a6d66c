//! A pod's `resolv.conf` as the kubelet makes it: from `dnsPolicy`, the
//! cluster DNS, the node's own resolv.conf and `spec.dnsConfig`, sent to the
//! runtime as the sandbox's CRI `DnsConfig`.

use std::net::IpAddr;
use std::path::PathBuf;

use client::k8s_openapi::api::core::v1::{Pod, PodDNSConfig};

use crate::cri::api as cri;

/// The kubelet's limits (Kubernetes' `MaxDNSNameservers` and `MaxDNSSearchPaths`).
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;
/// The options a ClusterFirst pod gets (the kubelet's `defaultDNSOptions`).
const CLUSTER_OPTIONS: &[&str] = &["ndots:5"];

/// The agent's DNS settings (the kubelet's `--cluster-dns`, `--cluster-domain`, `--resolv-conf`).
#[derive(Clone, Debug)]
pub struct ClusterDns {
    /// Cluster DNS servers; empty: ClusterFirst pods fall back to Default.
    pub servers: Vec<IpAddr>,
    pub domain: String,
    /// The node's resolver configuration, which `Default` pods get.
    pub resolv_conf: PathBuf,
}

impl Default for ClusterDns {
    fn default() -> Self {
        Self { servers: Vec::new(), domain: "cluster.local".into(), resolv_conf: PathBuf::from("/etc/resolv.conf") }
    }
}

/// The pod's DNS config, and a warning for the pod's events when ClusterFirst
/// could not be honoured (the kubelet's `MissingClusterDNS`).
pub struct PodDns {
    pub config: cri::DnsConfig,
    pub missing_cluster_dns: Option<String>,
}

/// `resolv_conf` is the node's resolv.conf text.
pub fn pod_dns(pod: &Pod, cluster: &ClusterDns, resolv_conf: &str) -> PodDns {
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let mut missing_cluster_dns = None;
    let mut config = match policy {
        "None" => cri::DnsConfig::default(),
        "ClusterFirst" if host_network => parse_resolv_conf(resolv_conf),
        "ClusterFirst" | "ClusterFirstWithHostNet" if !cluster.servers.is_empty() => {
            let host = parse_resolv_conf(resolv_conf);
            let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
            let domain = &cluster.domain;
            let mut searches = vec![format!("{namespace}.svc.{domain}"), format!("svc.{domain}"), domain.clone()];
            searches.extend(host.searches);
            cri::DnsConfig {
                servers: cluster.servers.iter().map(IpAddr::to_string).collect(),
                searches: dedup(searches),
                options: CLUSTER_OPTIONS.iter().map(|o| o.to_string()).collect(),
            }
        }
        "ClusterFirst" | "ClusterFirstWithHostNet" => {
            missing_cluster_dns = Some(format!(
                "kubelet does not have ClusterDNS IP configured and cannot create Pod using \"{policy}\" policy. Falling back to \"Default\" policy."
            ));
            parse_resolv_conf(resolv_conf)
        }
        // "Default", and what validation would have refused.
        _ => parse_resolv_conf(resolv_conf),
    };
    if let Some(own) = &spec.dns_config {
        config = merge(config, own);
    }
    config.servers.truncate(MAX_NAMESERVERS);
    config.searches.truncate(MAX_SEARCHES);
    PodDns { config, missing_cluster_dns }
}

/// The kubelet's `appendDNSConfig`: the pod's servers and searches after the
/// policy's (no duplicates); its options replace those of the same name.
fn merge(mut config: cri::DnsConfig, own: &PodDNSConfig) -> cri::DnsConfig {
    config.servers.extend(own.nameservers.iter().flatten().cloned());
    config.servers = dedup(std::mem::take(&mut config.servers));
    config.searches.extend(own.searches.iter().flatten().cloned());
    config.searches = dedup(std::mem::take(&mut config.searches));
    for option in own.options.iter().flatten() {
        let rendered = match &option.value {
            Some(value) => format!("{}:{value}", option.name.as_deref().unwrap_or_default()),
            None => option.name.clone().unwrap_or_default(),
        };
        let name = option.name.as_deref().unwrap_or_default();
        config.options.retain(|existing| existing.split(':').next() != Some(name));
        config.options.push(rendered);
    }
    config
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut seen = Vec::with_capacity(items.len());
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

/// `nameserver`, `search` (the last line counts) and `options` of a resolv.conf.
fn parse_resolv_conf(text: &str) -> cri::DnsConfig {
    let mut config = cri::DnsConfig::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("nameserver") => config.servers.extend(fields.next().map(str::to_string)),
            Some("search") => config.searches = fields.map(str::to_string).collect(),
            Some("options") => config.options.extend(fields.map(str::to_string)),
            _ => {}
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: &str = "# the node's\nnameserver 192.168.1.1\nnameserver 192.168.1.2\nsearch corp.example lab.example\noptions edns0\n";

    fn pod(spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = serde_json::json!([{ "name": "c", "image": "busybox" }]);
        serde_json::from_value(serde_json::json!({ "metadata": { "name": "p", "namespace": "shop" }, "spec": spec })).unwrap()
    }

    fn cluster() -> ClusterDns {
        ClusterDns { servers: vec!["10.96.0.10".parse().unwrap()], ..Default::default() }
    }

    #[test]
    fn cluster_first_uses_the_cluster_dns_and_the_search_path() {
        let dns = pod_dns(&pod(serde_json::json!({})), &cluster(), NODE);
        assert_eq!(dns.config.servers, vec!["10.96.0.10"]);
        assert_eq!(
            dns.config.searches,
            vec!["shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example", "lab.example"]
        );
        assert_eq!(dns.config.options, vec!["ndots:5"]);
        assert!(dns.missing_cluster_dns.is_none());
    }

    #[test]
    fn default_and_host_network_pods_get_the_nodes_resolver() {
        let node = cri::DnsConfig {
            servers: vec!["192.168.1.1".into(), "192.168.1.2".into()],
            searches: vec!["corp.example".into(), "lab.example".into()],
            options: vec!["edns0".into()],
        };
        assert_eq!(pod_dns(&pod(serde_json::json!({ "dnsPolicy": "Default" })), &cluster(), NODE).config, node);
        // ClusterFirst on the node's network falls back to Default, as in the kubelet...
        assert_eq!(pod_dns(&pod(serde_json::json!({ "hostNetwork": true })), &cluster(), NODE).config, node);
        // ...unless the pod asks for ClusterFirstWithHostNet.
        let with_host_net = pod_dns(&pod(serde_json::json!({ "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet" })), &cluster(), NODE);
        assert_eq!(with_host_net.config.servers, vec!["10.96.0.10"]);
    }

    #[test]
    fn without_a_cluster_dns_cluster_first_falls_back_with_a_warning() {
        let dns = pod_dns(&pod(serde_json::json!({})), &ClusterDns::default(), NODE);
        assert_eq!(dns.config.servers, vec!["192.168.1.1", "192.168.1.2"]);
        assert!(dns.missing_cluster_dns.unwrap().contains("Falling back to \"Default\" policy"));
    }

    #[test]
    fn none_takes_only_the_pods_dns_config_and_others_merge_it() {
        let own = serde_json::json!({
            "nameservers": ["1.1.1.1"],
            "searches": ["my.example"],
            "options": [{ "name": "ndots", "value": "2" }, { "name": "single-request" }]
        });
        let none = pod_dns(&pod(serde_json::json!({ "dnsPolicy": "None", "dnsConfig": own })), &cluster(), NODE);
        assert_eq!(
            none.config,
            cri::DnsConfig { servers: vec!["1.1.1.1".into()], searches: vec!["my.example".into()], options: vec!["ndots:2".into(), "single-request".into()] }
        );
        let merged = pod_dns(&pod(serde_json::json!({ "dnsConfig": own })), &cluster(), NODE);
        assert_eq!(merged.config.servers, vec!["10.96.0.10", "1.1.1.1"]);
        assert_eq!(merged.config.searches.last().map(String::as_str), Some("my.example"));
        assert_eq!(merged.config.options, vec!["ndots:2", "single-request"], "the pod's ndots replaces the cluster's");
    }

    #[test]
    fn at_most_three_nameservers() {
        let own = serde_json::json!({ "nameservers": ["1.1.1.1", "8.8.8.8", "9.9.9.9"] });
        let dns = pod_dns(&pod(serde_json::json!({ "dnsConfig": own })), &cluster(), NODE);
        assert_eq!(dns.config.servers, vec!["10.96.0.10", "1.1.1.1", "8.8.8.8"]);
    }
}
