//! What a query name inside the cluster domain asks for, per Kubernetes'
//! DNS-based service discovery specification (schema 1.1.0), plus pod names in
//! CoreDNS's `pods insecure` form, which the Corefile Kubernetes ships enables.

use std::net::Ipv4Addr;

/// A name below (or at) the cluster domain, split into what it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// The cluster domain itself: its SOA and NS records.
    Apex,
    /// `dns-version.<zone>`: TXT with the schema version.
    SchemaVersion,
    /// `svc.<zone>` or `pod.<zone>`: names with only names below them.
    Branch,
    /// `<ns>.svc.<zone>`: exists while the namespace has Services.
    Namespace(&'a str),
    /// `<service>.<ns>.svc.<zone>`.
    Service { namespace: &'a str, service: &'a str },
    /// `<hostname>.<service>.<ns>.svc.<zone>`: one endpoint of a headless Service.
    Endpoint { namespace: &'a str, service: &'a str, hostname: &'a str },
    /// `_<port>._<proto>.<service>.<ns>.svc.<zone>`: SRV for a named port.
    Port { namespace: &'a str, service: &'a str, port: &'a str, protocol: &'a str },
    /// `<a-b-c-d>.<ns>.pod.<zone>`: the pod with that address.
    Pod { ip: Ipv4Addr },
    /// Anything else in the domain: NXDOMAIN.
    Unknown,
}

/// Where `name` (lower case, with or without the final dot) falls in `zone`;
/// `None` when it is outside the cluster domain.
pub fn parse<'a>(name: &'a str, zone: &str) -> Option<Target<'a>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name == zone {
        return Some(Target::Apex);
    }
    let relative = name.strip_suffix(zone)?.strip_suffix('.')?;
    let labels: Vec<&str> = relative.split('.').collect();
    let target = match labels.as_slice() {
        ["dns-version"] => Target::SchemaVersion,
        ["svc"] | ["pod"] => Target::Branch,
        [namespace, "svc"] => Target::Namespace(namespace),
        [service, namespace, "svc"] => Target::Service { namespace, service },
        [port, protocol, service, namespace, "svc"] => match (port.strip_prefix('_'), protocol.strip_prefix('_')) {
            (Some(port), Some(protocol)) => Target::Port { namespace, service, port, protocol },
            _ => Target::Unknown,
        },
        [hostname, service, namespace, "svc"] if !hostname.starts_with('_') => Target::Endpoint { namespace, service, hostname },
        [dashed, _namespace, "pod"] => dashed.replace('-', ".").parse().map_or(Target::Unknown, |ip| Target::Pod { ip }),
        _ => Target::Unknown,
    };
    Some(target)
}

/// The endpoint name CoreDNS gives an address without a hostname: its IP with dashes.
pub fn dashed(ip: &str) -> String {
    ip.replace(['.', ':'], "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONE: &str = "cluster.local";

    #[test]
    fn names_in_the_cluster_domain() {
        assert_eq!(parse("cluster.local.", ZONE), Some(Target::Apex));
        assert_eq!(parse("dns-version.cluster.local.", ZONE), Some(Target::SchemaVersion));
        assert_eq!(parse("svc.cluster.local.", ZONE), Some(Target::Branch));
        assert_eq!(parse("default.svc.cluster.local", ZONE), Some(Target::Namespace("default")));
        assert_eq!(parse("web.default.svc.cluster.local.", ZONE), Some(Target::Service { namespace: "default", service: "web" }));
        assert_eq!(
            parse("web-0.web.default.svc.cluster.local.", ZONE),
            Some(Target::Endpoint { namespace: "default", service: "web", hostname: "web-0" })
        );
        assert_eq!(
            parse("_http._tcp.web.default.svc.cluster.local.", ZONE),
            Some(Target::Port { namespace: "default", service: "web", port: "http", protocol: "tcp" })
        );
        assert_eq!(parse("10-244-1-5.default.pod.cluster.local.", ZONE), Some(Target::Pod { ip: Ipv4Addr::new(10, 244, 1, 5) }));
    }

    #[test]
    fn unknown_and_outside_names() {
        assert_eq!(parse("example.com.", ZONE), None);
        assert_eq!(parse("notcluster.local.", ZONE), None);
        assert_eq!(parse("a.b.c.d.e.f.cluster.local.", ZONE), Some(Target::Unknown));
        assert_eq!(parse("_http.tcp.web.default.svc.cluster.local.", ZONE), Some(Target::Unknown));
        assert_eq!(parse("_tcp.web.default.svc.cluster.local.", ZONE), Some(Target::Unknown));
        assert_eq!(parse("not-an-ip.default.pod.cluster.local.", ZONE), Some(Target::Unknown));
        assert_eq!(parse("web.default.cluster.local.", ZONE), Some(Target::Unknown));
    }

    #[test]
    fn dashed_addresses() {
        assert_eq!(dashed("10.244.0.7"), "10-244-0-7");
    }
}
