//! What the proxy programs, read from Services and their Endpoints: one
//! [`ServicePort`] per port of each Service that has a cluster IP, with the
//! ready endpoints that port reaches. Nothing here touches the network.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Endpoints, Service};

/// Kubernetes' default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10800;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// From Kubernetes' spelling (`TCP`, the default when unset, `UDP`, `SCTP`).
    fn parse(protocol: Option<&str>) -> Option<Self> {
        match protocol.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    /// As nftables spells it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        })
    }
}

/// A ready endpoint: a pod address and the port the Service port reaches there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// One port of one Service, as the node proxies it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServicePort {
    pub namespace: String,
    pub service: String,
    /// The port's name; empty for the single unnamed port a Service may have.
    pub port_name: String,
    pub protocol: Protocol,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub node_port: Option<u16>,
    /// `sessionAffinity: ClientIP`: how long a client sticks to its endpoint.
    pub affinity_timeout_seconds: Option<u32>,
    /// Ready endpoints, sorted, without duplicates.
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// `namespace/service/protocol/port`, where port is the port's name or,
    /// for an unnamed port, its number: unique per node, and readable in rule
    /// listings.
    pub fn id(&self) -> String {
        let port = if self.port_name.is_empty() { self.port.to_string() } else { self.port_name.clone() };
        format!("{}/{}/{}/{}", self.namespace, self.service, self.protocol, port)
    }
}

/// The ports `service` exposes on its cluster IP, with the ready endpoints of
/// `endpoints` (None: no Endpoints object yet). Services without a cluster IP
/// (headless, ExternalName) and IPv6 addresses give nothing: they need no rules.
pub fn service_ports(service: &Service, endpoints: Option<&Endpoints>) -> Vec<ServicePort> {
    let Some(spec) = service.spec.as_ref() else { return Vec::new() };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let Some(cluster_ip) = spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok()) else {
        return Vec::new();
    };
    let affinity_timeout_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|config| config.client_ip.as_ref()?.timeout_seconds)
            .and_then(|seconds| u32::try_from(seconds).ok())
            .filter(|seconds| *seconds > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS)
    });
    let node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let name = service.metadata.name.clone().unwrap_or_default();
    spec.ports
        .iter()
        .flatten()
        .filter_map(|port| {
            let protocol = Protocol::parse(port.protocol.as_deref())?;
            let port_name = port.name.clone().unwrap_or_default();
            Some(ServicePort {
                namespace: namespace.clone(),
                service: name.clone(),
                endpoints: ready_endpoints(endpoints, &port_name, protocol),
                port_name,
                protocol,
                cluster_ip,
                port: u16::try_from(port.port).ok().filter(|p| *p != 0)?,
                node_port: port.node_port.filter(|_| node_ports).and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0),
                affinity_timeout_seconds,
            })
        })
        .collect()
}

/// The ready addresses of every subset that carries the port named
/// `port_name` with `protocol`, paired with that port's number.
fn ready_endpoints(endpoints: Option<&Endpoints>, port_name: &str, protocol: Protocol) -> Vec<Endpoint> {
    let mut found = BTreeSet::new();
    for subset in endpoints.and_then(|e| e.subsets.as_ref()).into_iter().flatten() {
        let port = subset.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or_default() == port_name && Protocol::parse(p.protocol.as_deref()) == Some(protocol)
        });
        let Some(port) = port.and_then(|p| u16::try_from(p.port).ok()).filter(|p| *p != 0) else { continue };
        for address in subset.addresses.iter().flatten() {
            if let Ok(ip) = address.ip.parse::<Ipv4Addr>() {
                found.insert(Endpoint { ip, port });
            }
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "web", "namespace": "default" },
            "spec": spec,
        }))
        .expect("a Service")
    }

    fn endpoints(subsets: serde_json::Value) -> Endpoints {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "web", "namespace": "default" },
            "subsets": subsets,
        }))
        .expect("Endpoints")
    }

    #[test]
    fn ports_pair_with_ready_addresses_by_name_and_protocol() {
        let svc = service(serde_json::json!({
            "clusterIP": "10.96.0.20",
            "type": "NodePort",
            "ports": [
                { "name": "http", "port": 80, "targetPort": "web", "nodePort": 30080 },
                { "name": "dns", "port": 53, "protocol": "UDP" },
            ],
        }));
        let eps = endpoints(serde_json::json!([
            { "addresses": [{ "ip": "10.244.1.3" }, { "ip": "10.244.1.2" }],
              "notReadyAddresses": [{ "ip": "10.244.1.9" }],
              "ports": [{ "name": "http", "port": 8080 }, { "name": "dns", "port": 5353, "protocol": "UDP" }] },
            { "addresses": [{ "ip": "10.244.2.2" }], "ports": [{ "name": "http", "port": 9090 }] },
        ]));
        let ports = service_ports(&svc, Some(&eps));
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0].id(), "default/web/tcp/http");
        assert_eq!(ports[0].node_port, Some(30080));
        assert_eq!(
            ports[0].endpoints,
            [
                Endpoint { ip: "10.244.1.2".parse().unwrap(), port: 8080 },
                Endpoint { ip: "10.244.1.3".parse().unwrap(), port: 8080 },
                Endpoint { ip: "10.244.2.2".parse().unwrap(), port: 9090 },
            ],
            "not-ready addresses are left out; each subset has its own target port"
        );
        assert_eq!(ports[1].protocol, Protocol::Udp);
        assert_eq!(ports[1].endpoints.len(), 2);
        assert_eq!(ports[1].affinity_timeout_seconds, None);
    }

    #[test]
    fn headless_and_external_name_services_have_no_ports() {
        let headless = service(serde_json::json!({ "clusterIP": "None", "ports": [{ "port": 80 }] }));
        assert!(service_ports(&headless, None).is_empty());
        let external = service(serde_json::json!({ "type": "ExternalName", "externalName": "example.com" }));
        assert!(service_ports(&external, None).is_empty());
    }

    #[test]
    fn client_ip_affinity_defaults_to_three_hours() {
        let sticky = service(serde_json::json!({
            "clusterIP": "10.96.0.21", "sessionAffinity": "ClientIP", "ports": [{ "port": 80, "nodePort": 30001 }],
        }));
        let ports = service_ports(&sticky, None);
        assert_eq!(ports[0].affinity_timeout_seconds, Some(DEFAULT_AFFINITY_TIMEOUT_SECONDS));
        assert_eq!(ports[0].node_port, None, "a ClusterIP Service opens no node port");
        assert!(ports[0].endpoints.is_empty());
        assert_eq!(ports[0].id(), "default/web/tcp/80");

        let short = service(serde_json::json!({
            "clusterIP": "10.96.0.21", "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": { "clientIP": { "timeoutSeconds": 60 } }, "ports": [{ "port": 80 }],
        }));
        assert_eq!(service_ports(&short, None)[0].affinity_timeout_seconds, Some(60));
    }
}
