//! The records a name in the cluster domain has, from Services and Endpoints.
//! Pure functions over the objects, so each rule of the specification is
//! checked without a server.

use std::net::Ipv4Addr;

use hickory_proto::rr::rdata::{A, CNAME, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, Endpoints, Service};

use crate::names::{dashed, Target};

/// The version of Kubernetes' DNS schema served (`dns-version.<zone>`).
pub const SCHEMA_VERSION: &str = "1.1.0";

/// What the records are made with.
#[derive(Clone, Debug)]
pub struct Zone {
    /// The cluster domain, lower case, without the final dot (`cluster.local`).
    pub domain: String,
    pub ttl: u32,
    /// SOA serial (the server's start time, so it only grows).
    pub serial: u32,
}

/// What a name has: `None` is NXDOMAIN. `extra` are the A records of SRV
/// targets, for the additional section.
#[derive(Debug, Default)]
pub struct Found {
    pub records: Vec<Record>,
    pub extra: Vec<Record>,
}

/// Looks up the objects a name needs.
pub trait Objects {
    fn service(&self, namespace: &str, name: &str) -> Option<std::sync::Arc<Service>>;
    fn endpoints(&self, namespace: &str, name: &str) -> Option<std::sync::Arc<Endpoints>>;
    fn namespace_has_services(&self, namespace: &str) -> bool;
}

impl Zone {
    pub fn name(&self, relative: &str) -> Name {
        let text = if relative.is_empty() { format!("{}.", self.domain) } else { format!("{relative}.{}.", self.domain) };
        // Labels come from Kubernetes object names (DNS labels) and the domain.
        Name::from_ascii(&text).unwrap_or_else(|_| Name::root())
    }

    fn record(&self, name: Name, data: RData) -> Record {
        Record::from_rdata(name, self.ttl, data)
    }

    /// The SOA that negative answers carry in their authority section, as CoreDNS's.
    pub fn soa(&self) -> Record {
        let data = SOA::new(self.name("ns.dns"), self.name("hostmaster"), self.serial, 7200, 1800, 86400, self.ttl);
        self.record(self.name(""), RData::SOA(data))
    }

    /// Every record (of any type) at `owner`, the query name that parsed to
    /// `target`, or `None` if the name does not exist.
    pub fn lookup(&self, owner: &Name, target: &Target, objects: &dyn Objects) -> Option<Found> {
        match *target {
            Target::Apex => Some(Found { records: vec![self.soa()], extra: vec![] }),
            Target::SchemaVersion => {
                let txt = TXT::new(vec![SCHEMA_VERSION.to_string()]);
                Some(Found { records: vec![self.record(owner.clone(), RData::TXT(txt))], extra: vec![] })
            }
            Target::Branch => Some(Found::default()),
            Target::Namespace(namespace) => objects.namespace_has_services(namespace).then(Found::default),
            Target::Service { namespace, service } => {
                let svc = objects.service(namespace, service)?;
                let endpoints = objects.endpoints(namespace, service);
                Some(self.service_records(owner, &svc, endpoints.as_deref(), None))
            }
            Target::Port { namespace, service, port, protocol } => {
                let svc = objects.service(namespace, service)?;
                let endpoints = objects.endpoints(namespace, service);
                let found = self.service_records(owner, &svc, endpoints.as_deref(), Some((port, protocol)));
                let has_srv = found.records.iter().any(|r| r.record_type() == RecordType::SRV);
                has_srv.then_some(found)
            }
            Target::Endpoint { namespace, service, hostname } => {
                let svc = objects.service(namespace, service)?;
                if !is_headless(&svc) {
                    return None;
                }
                let endpoints = objects.endpoints(namespace, service)?;
                let records: Vec<Record> = ready_addresses(&endpoints)
                    .filter(|address| endpoint_hostname(address) == hostname)
                    .filter_map(|address| address.ip.parse::<Ipv4Addr>().ok())
                    .map(|ip| self.record(owner.clone(), RData::A(A(ip))))
                    .collect();
                (!records.is_empty()).then_some(Found { records, extra: vec![] })
            }
            Target::Pod { ip } => Some(Found { records: vec![self.record(owner.clone(), RData::A(A(ip)))], extra: vec![] }),
            Target::Unknown => None,
        }
    }

    /// Records at a Service's name, or (with `port`) at one of its `_port._proto` names.
    fn service_records(&self, owner: &Name, svc: &Service, endpoints: Option<&Endpoints>, port: Option<(&str, &str)>) -> Found {
        let namespace = svc.metadata.namespace.as_deref().unwrap_or_default();
        let service = svc.metadata.name.as_deref().unwrap_or_default();
        let base = format!("{service}.{namespace}.svc");
        let spec = svc.spec.clone().unwrap_or_default();
        if spec.type_.as_deref() == Some("ExternalName") {
            // An ExternalName Service is a CNAME at the Service's name only.
            let target = spec.external_name.unwrap_or_default();
            return match (port, Name::from_ascii(format!("{}.", target.trim_end_matches('.')))) {
                (None, Ok(target)) => Found { records: vec![self.record(owner.clone(), RData::CNAME(CNAME(target)))], extra: vec![] },
                _ => Found::default(),
            };
        }
        let wanted = |name: Option<&str>, proto: Option<&str>| match port {
            Some((port, protocol)) => name == Some(port) && proto.unwrap_or("TCP").eq_ignore_ascii_case(protocol),
            None => true,
        };
        let mut found = Found::default();
        let mut targets: Vec<(u16, Name, Ipv4Addr)> = Vec::new();
        if is_headless(svc) {
            for subset in endpoints.into_iter().flat_map(|e| e.subsets.iter().flatten()) {
                for address in subset.addresses.iter().flatten() {
                    let Ok(ip) = address.ip.parse::<Ipv4Addr>() else { continue };
                    if port.is_none() {
                        found.records.push(self.record(owner.clone(), RData::A(A(ip))));
                    }
                    let host = self.name(&format!("{}.{base}", endpoint_hostname(address)));
                    for endpoint_port in subset.ports.iter().flatten().filter(|p: &&EndpointPort| wanted(p.name.as_deref(), p.protocol.as_deref())) {
                        targets.push((port_number(endpoint_port.port), host.clone(), ip));
                    }
                }
            }
        } else if let Some(ip) = spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok()) {
            if port.is_none() {
                found.records.push(self.record(owner.clone(), RData::A(A(ip))));
            }
            for service_port in spec.ports.iter().flatten().filter(|p| wanted(p.name.as_deref(), p.protocol.as_deref())) {
                targets.push((port_number(service_port.port), self.name(&base), ip));
            }
        }
        // Equal shares of 100 among the SRV records, as CoreDNS weighs them.
        let weight = u16::try_from(100 / targets.len().max(1)).unwrap_or(100).max(1);
        for (number, host, ip) in targets {
            found.records.push(self.record(owner.clone(), RData::SRV(SRV::new(0, weight, number, host.clone()))));
            let extra = self.record(host, RData::A(A(ip)));
            if !found.extra.contains(&extra) {
                found.extra.push(extra);
            }
        }
        found
    }
}

fn port_number(port: i32) -> u16 {
    u16::try_from(port).unwrap_or_default()
}

/// A Service with `clusterIP: None`: its name resolves to its ready endpoints.
pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

fn ready_addresses(endpoints: &Endpoints) -> impl Iterator<Item = &EndpointAddress> {
    endpoints.subsets.iter().flatten().flat_map(|s| s.addresses.iter().flatten())
}

/// The endpoint's hostname, or its dashed IP (the spec's "system-assigned identifier").
fn endpoint_hostname(address: &EndpointAddress) -> String {
    address.hostname.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| dashed(&address.ip))
}
