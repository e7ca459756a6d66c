//! Cluster IPs and node ports of Services. Each one in use is a key in the
//! store (`/registry/ranges/...`), created when a Service takes it and deleted
//! when the Service goes, so concurrent creates can never share one.

use std::net::{IpAddr, Ipv4Addr};

use api::k8s_openapi::api::core::v1::Service;
use rand::Rng;
use serde_json::Value;
use store::{Store, StoreError};

use crate::rest::store_error;
use crate::status::{ApiError, ApiResult, Cause};

const IP_KEYS: &str = "/registry/ranges/serviceips/";
const PORT_KEYS: &str = "/registry/ranges/servicenodeports/";

/// An IPv4 range such as `10.96.0.0/12`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    base: u32,
    prefix: u8,
}

impl std::str::FromStr for Ipv4Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (address, prefix) = text.split_once('/').ok_or_else(|| format!("{text:?} is not a CIDR"))?;
        let address: Ipv4Addr = address.parse().map_err(|e| format!("{text:?}: {e}"))?;
        let prefix: u8 = prefix.parse().map_err(|e| format!("{text:?}: {e}"))?;
        if !(1..=30).contains(&prefix) {
            return Err(format!("{text:?}: the prefix must be between 1 and 30"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Self { base: u32::from(address) & mask, prefix })
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

impl Ipv4Cidr {
    fn size(&self) -> u32 {
        1 << (32 - self.prefix)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip).wrapping_sub(self.base) < self.size()
    }

    /// The `n`th address of the range (`n` = 1: the first after the network address).
    pub fn address(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + n % self.size())
    }

    /// The low addresses that dynamic allocation takes last, so Services that
    /// ask for a fixed one there (the cluster DNS at the tenth) find it free:
    /// Kubernetes' static subrange (KEP-3070), size/16 clamped to 16..=256.
    fn static_band(&self) -> u32 {
        if self.size() < 16 {
            return 0;
        }
        (self.size() / 16).clamp(16, 256)
    }

    /// How many addresses come before the static band in allocation order;
    /// allocation starts at a random offset below this.
    fn dynamic_first(&self) -> u32 {
        self.size() - 1 - self.static_band().max(2)
    }

    /// The usable addresses in allocation order: those above the static band,
    /// then those in it. Never the network or broadcast address, nor the first
    /// one, which Kubernetes keeps for the `kubernetes` Service.
    fn usable(&self, offset: u32) -> Ipv4Addr {
        let (first, end) = (2, self.size() - 1);
        let band = self.static_band().max(first);
        let index = offset % (end - first);
        let upper = end - band;
        let host = if index < upper { band + index } else { first + (index - upper) };
        Ipv4Addr::from(self.base + host)
    }
}

/// Where Services get their cluster IPs and node ports.
#[derive(Clone, Debug)]
pub struct ServiceRanges {
    pub cluster_ips: Ipv4Cidr,
    pub node_ports: std::ops::RangeInclusive<u16>,
}

impl Default for ServiceRanges {
    fn default() -> Self {
        Self { cluster_ips: Ipv4Cidr { base: u32::from(Ipv4Addr::new(10, 96, 0, 0)), prefix: 12 }, node_ports: 30000..=32767 }
    }
}

fn invalid(name: &str, field: &str, message: String) -> ApiError {
    ApiError::invalid("", "Service", name, vec![Cause { reason: "FieldValueInvalid".into(), message, field: field.into() }])
}

/// Takes a key of a range; false if another Service holds it.
async fn reserve(store: &dyn Store, key: String, taken: &mut Vec<String>) -> ApiResult<bool> {
    match store.create(&key, bytes::Bytes::new()).await {
        Ok(_) => {
            taken.push(key);
            Ok(true)
        }
        Err(StoreError::AlreadyExists { .. }) => Ok(false),
        Err(other) => Err(store_error(other)),
    }
}

/// Gives a new Service (JSON) its cluster IP and node ports, as Kubernetes'
/// allocators do. Returns the keys taken, for [`release_keys`] if the create fails.
pub async fn allocate(store: &dyn Store, ranges: &ServiceRanges, service: &mut Value) -> ApiResult<Vec<String>> {
    let mut typed: Service = serde_json::from_value(service.clone()).map_err(ApiError::internal)?;
    let name = typed.metadata.name.clone().unwrap_or_default();
    let mut taken = Vec::new();
    let result = allocate_into(store, ranges, &mut typed, &name, &mut taken).await;
    if let Err(error) = result {
        release_keys(store, &taken).await;
        return Err(error);
    }
    *service = serde_json::to_value(&typed).map_err(ApiError::internal)?;
    Ok(taken)
}

async fn allocate_into(
    store: &dyn Store,
    ranges: &ServiceRanges,
    service: &mut Service,
    name: &str,
    taken: &mut Vec<String>,
) -> ApiResult<()> {
    let spec = service.spec.clone().unwrap_or_default();
    let requested = spec.cluster_ip.clone().unwrap_or_default();
    if api::strategy::needs_cluster_ip(service) {
        let start: u32 = rand::rng().random::<u32>() % ranges.cluster_ips.dynamic_first();
        let mut found = None;
        for attempt in 0..ranges.cluster_ips.size() {
            let ip = ranges.cluster_ips.usable(start.wrapping_add(attempt));
            if reserve(store, format!("{IP_KEYS}{ip}"), taken).await? {
                found = Some(ip);
                break;
            }
        }
        let ip = found.ok_or_else(|| ApiError::internal("failed to allocate a service IP: range is full"))?;
        api::strategy::set_cluster_ip(service, Some(IpAddr::V4(ip)));
    } else if !requested.is_empty() && requested != "None" {
        let field = "spec.clusterIPs";
        let ip: Ipv4Addr = requested
            .parse()
            .map_err(|_| invalid(name, field, format!("Invalid value: [\"{requested}\"]: must be a valid IPv4 address")))?;
        if !ranges.cluster_ips.contains(ip) {
            return Err(invalid(name, field, format!(
                "Invalid value: [\"{requested}\"]: failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. The range of valid IPs is {}",
                ranges.cluster_ips
            )));
        }
        if !reserve(store, format!("{IP_KEYS}{ip}"), taken).await? {
            return Err(invalid(name, field, format!(
                "Invalid value: [\"{requested}\"]: failed to allocate IP {requested}: provided IP is already allocated"
            )));
        }
        api::strategy::set_cluster_ip(service, Some(IpAddr::V4(ip)));
    }

    let wants_node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
    if !wants_node_ports {
        return Ok(());
    }
    let ports = service.spec.as_mut().and_then(|s| s.ports.as_mut());
    for (index, port) in ports.into_iter().flatten().enumerate() {
        match port.node_port.filter(|p| *p != 0) {
            Some(requested) => {
                let in_range = u16::try_from(requested).is_ok_and(|p| ranges.node_ports.contains(&p));
                let field = format!("spec.ports[{index}].nodePort");
                if !in_range {
                    return Err(invalid(name, &field, format!(
                        "Invalid value: {requested}: provided port is not in the valid range. The range of valid ports is {}-{}",
                        ranges.node_ports.start(),
                        ranges.node_ports.end()
                    )));
                }
                if !reserve(store, format!("{PORT_KEYS}{requested}"), taken).await? {
                    return Err(invalid(name, &field, format!("Invalid value: {requested}: provided port is already allocated")));
                }
            }
            None => {
                let (low, high) = (u32::from(*ranges.node_ports.start()), u32::from(*ranges.node_ports.end()));
                let count = high - low + 1;
                let start: u32 = rand::rng().random();
                let mut found = None;
                for attempt in 0..count {
                    let candidate = low + start.wrapping_add(attempt) % count;
                    if reserve(store, format!("{PORT_KEYS}{candidate}"), taken).await? {
                        found = Some(candidate);
                        break;
                    }
                }
                let port_number = found.ok_or_else(|| ApiError::internal("failed to allocate a node port: range is full"))?;
                port.node_port = i32::try_from(port_number).ok();
            }
        }
    }
    Ok(())
}

/// Gives back what a removed Service held.
pub async fn release(store: &dyn Store, service: &Value) {
    let mut keys = Vec::new();
    let spec = &service["spec"];
    for ip in spec["clusterIPs"].as_array().into_iter().flatten().chain(std::iter::once(&spec["clusterIP"])) {
        if let Some(ip) = ip.as_str().filter(|ip| ip.parse::<IpAddr>().is_ok()) {
            let key = format!("{IP_KEYS}{ip}");
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    for port in spec["ports"].as_array().into_iter().flatten() {
        if let Some(node_port) = port["nodePort"].as_i64() {
            keys.push(format!("{PORT_KEYS}{node_port}"));
        }
    }
    release_keys(store, &keys).await;
}

pub async fn release_keys(store: &dyn Store, keys: &[String]) {
    for key in keys {
        match store.delete(key, None).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(error) => tracing::warn!(key, %error, "could not release a service range key"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let cidr: Ipv4Cidr = "10.96.3.4/12".parse().unwrap();
        assert_eq!(cidr.to_string(), "10.96.0.0/12");
        assert!(cidr.contains(Ipv4Addr::new(10, 111, 255, 255)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 112, 0, 0)));
        assert_eq!(cidr.address(1), Ipv4Addr::new(10, 96, 0, 1));
        assert_eq!(cidr.address(10), Ipv4Addr::new(10, 96, 0, 10));
        // Dynamic allocation goes above the 256 static addresses first, then into them.
        assert_eq!(cidr.usable(0), Ipv4Addr::new(10, 96, 1, 0));
        assert_eq!(cidr.usable(cidr.dynamic_first() - 1), Ipv4Addr::new(10, 111, 255, 254));
        assert_eq!(cidr.usable(cidr.dynamic_first()), Ipv4Addr::new(10, 96, 0, 2));
        let small: Ipv4Cidr = "192.168.0.0/29".parse().unwrap();
        for offset in 0..100 {
            let ip = u32::from(small.usable(offset));
            assert!((u32::from(Ipv4Addr::new(192, 168, 0, 2))..=u32::from(Ipv4Addr::new(192, 168, 0, 6))).contains(&ip));
        }
        assert!("10.0.0.0".parse::<Ipv4Cidr>().is_err());
        assert!("10.0.0.0/0".parse::<Ipv4Cidr>().is_err());
    }
}
