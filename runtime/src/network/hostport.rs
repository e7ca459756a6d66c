//! `hostPort` mappings: DNAT from the node's addresses to pod addresses, in
//! an nftables table of r8s's own (default `r8s`) in the node's namespace.
//!
//! The table holds two maps, filled per pod, and fixed chains that look them up:
//!
//! ```text
//! map hostports     { proto . port        : pod address . port }   hostIP unset
//! map hostip_ports  { addr . proto . port : pod address . port }   hostIP set
//! chain hostport_dnat: dnat through either map
//! prerouting / output (nat, local destinations only) → hostport_dnat
//! postrouting: masquerade DNATed pod → pod traffic (another pod, or the
//!   pod itself: "hairpin", with the veth's bridge port in hairpin mode)
//! ```
//!
//! so a pod's mappings come and go as map elements, and other r8s chains (the
//! Service proxy of a later issue) can live in the same table. Mappings are
//! found again by listing the maps: teardown needs no memory of what was set up.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;
use serde_json::Value;

use super::netns::{run_in_netns, NetnsError};
use super::{PortMapping, Protocol};

const ANY_ADDRESS_MAP: &str = "hostports";
const HOST_IP_MAP: &str = "hostip_ports";

#[derive(Debug, thiserror::Error)]
pub enum HostPortError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("running nft: {0}")]
    Spawn(std::io::Error),
    #[error("nft failed: {stderr}")]
    Nft { stderr: String },
    #[error("nft printed output r8s cannot read: {0}")]
    Listing(String),
    #[error("host port {protocol}/{host_port}{} is already mapped to {taken_by}", host_ip.map(|ip| format!(" on {ip}")).unwrap_or_default())]
    Taken { protocol: Protocol, host_port: u16, host_ip: Option<Ipv4Addr>, taken_by: String },
}

/// One element of the maps: which map, its key and its value, as nft spells them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Element {
    map: &'static str,
    key: String,
    target: Ipv4Addr,
    value: String,
}

impl Element {
    fn new(pod: Ipv4Addr, mapping: &PortMapping) -> Self {
        let (map, key) = match mapping.host_ip {
            Some(host_ip) => (HOST_IP_MAP, format!("{host_ip} . {} . {}", mapping.protocol, mapping.host_port)),
            None => (ANY_ADDRESS_MAP, format!("{} . {}", mapping.protocol, mapping.host_port)),
        };
        Self { map, key, target: pod, value: format!("{pod} . {}", mapping.container_port) }
    }
}

/// The hostPort rules of one node.
#[derive(Debug, Clone)]
pub struct HostPorts {
    /// The node's namespace; `None`: the process's own.
    netns: Option<PathBuf>,
    table: String,
    pod_subnet: Ipv4Net,
}

impl HostPorts {
    pub fn new(netns: Option<&Path>, table: &str, pod_subnet: Ipv4Net) -> Self {
        Self { netns: netns.map(Path::to_owned), table: table.to_owned(), pod_subnet }
    }

    /// Creates the table, maps and chains, or refreshes the chains' rules.
    /// Existing map elements (live pods' mappings) are kept. Idempotent.
    pub async fn install(&self) -> Result<(), HostPortError> {
        let table = &self.table;
        let subnet = self.pod_subnet;
        let script = format!(
            "add table ip {table}
add map ip {table} {ANY_ADDRESS_MAP} {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
add map ip {table} {HOST_IP_MAP} {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}
add chain ip {table} hostport_dnat
add chain ip {table} hostport_prerouting {{ type nat hook prerouting priority -100; }}
add chain ip {table} hostport_output {{ type nat hook output priority -100; }}
add chain ip {table} hostport_postrouting {{ type nat hook postrouting priority 100; }}
flush chain ip {table} hostport_dnat
flush chain ip {table} hostport_prerouting
flush chain ip {table} hostport_output
flush chain ip {table} hostport_postrouting
add rule ip {table} hostport_dnat dnat ip to ip daddr . meta l4proto . th dport map @{HOST_IP_MAP}
add rule ip {table} hostport_dnat dnat ip to meta l4proto . th dport map @{ANY_ADDRESS_MAP}
add rule ip {table} hostport_prerouting fib daddr type local jump hostport_dnat
add rule ip {table} hostport_output fib daddr type local jump hostport_dnat
add rule ip {table} hostport_postrouting ct status dnat ip saddr {subnet} ip daddr {subnet} masquerade
"
        );
        self.nft(&["-f", "-"], Some(script)).await.map(drop)
    }

    /// Maps `mappings` to the pod at `pod`. Mappings the pod already has are
    /// left alone; a host port held by another pod is an error and nothing is added.
    pub async fn add(&self, pod: Ipv4Addr, mappings: &[PortMapping]) -> Result<(), HostPortError> {
        let wanted: Vec<(&PortMapping, Element)> = mappings.iter().map(|m| (m, Element::new(pod, m))).collect();
        if wanted.is_empty() {
            return Ok(());
        }
        // The common case costs one nft run: `create` fails, as one batch, if
        // any key exists. Only then look at what is there.
        match self.create(&wanted).await {
            Err(HostPortError::Nft { stderr }) if stderr.contains("File exists") => {}
            other => return other,
        }
        let existing = self.elements().await?;
        let mut missing = Vec::new();
        for (mapping, element) in wanted {
            match existing.iter().find(|e| e.map == element.map && e.key == element.key) {
                // This pod's own mapping, from an earlier setup.
                Some(present) if *present == element => {}
                Some(present) => return Err(taken(mapping, present.value.clone())),
                None => missing.push((mapping, element)),
            }
        }
        match self.create(&missing).await {
            Err(HostPortError::Nft { stderr }) if stderr.contains("File exists") => {
                Err(taken(missing[0].0, "another pod, added at the same time".to_owned()))
            }
            other => other,
        }
    }

    /// Adds `elements` in one batch that fails whole if any key exists.
    async fn create(&self, elements: &[(&PortMapping, Element)]) -> Result<(), HostPortError> {
        if elements.is_empty() {
            return Ok(());
        }
        let script: String = elements
            .iter()
            .map(|(_, e)| format!("create element ip {} {} {{ {} : {} }}\n", self.table, e.map, e.key, e.value))
            .collect();
        self.nft(&["-f", "-"], Some(script)).await.map(drop)
    }

    /// Removes every mapping whose pod address `remove` selects; returns how many.
    pub async fn remove_where(&self, remove: impl Fn(Ipv4Addr) -> bool) -> Result<usize, HostPortError> {
        let doomed: Vec<Element> = self.elements().await?.into_iter().filter(|e| remove(e.target)).collect();
        if doomed.is_empty() {
            return Ok(0);
        }
        let script: String = doomed
            .iter()
            .map(|e| format!("delete element ip {} {} {{ {} }}\n", self.table, e.map, e.key))
            .collect();
        self.nft(&["-f", "-"], Some(script)).await?;
        Ok(doomed.len())
    }

    /// Every element of both maps.
    async fn elements(&self) -> Result<Vec<Element>, HostPortError> {
        let listing = self.nft(&["-j", "list", "table", "ip", &self.table], None).await?;
        let listing: Value =
            serde_json::from_str(&listing).map_err(|e| HostPortError::Listing(format!("not JSON: {e}")))?;
        let objects = listing["nftables"].as_array().ok_or_else(|| HostPortError::Listing("no `nftables` array".into()))?;
        let mut elements = Vec::new();
        for map in objects.iter().filter_map(|object| object.get("map")) {
            let map_name = match map["name"].as_str() {
                Some(ANY_ADDRESS_MAP) => ANY_ADDRESS_MAP,
                Some(HOST_IP_MAP) => HOST_IP_MAP,
                _ => continue,
            };
            for pair in map["elem"].as_array().into_iter().flatten() {
                elements.push(parse_element(map_name, pair)?);
            }
        }
        Ok(elements)
    }

    /// Runs `nft` with `args` in the node's namespace, feeding it `stdin`.
    async fn nft(&self, args: &[&str], stdin: Option<String>) -> Result<String, HostPortError> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        // A process started by a thread inside a namespace is born in it.
        let output = run_in_netns(self.netns.as_deref(), move || {
            let mut child = Command::new("nft")
                .args(&args)
                .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            if let (Some(script), Some(mut pipe)) = (stdin, child.stdin.take()) {
                pipe.write_all(script.as_bytes())?;
            }
            child.wait_with_output()
        })
        .await?
        .map_err(HostPortError::Spawn)?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(HostPortError::Nft { stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned() })
        }
    }
}

fn taken(mapping: &PortMapping, taken_by: String) -> HostPortError {
    HostPortError::Taken { protocol: mapping.protocol, host_port: mapping.host_port, host_ip: mapping.host_ip, taken_by }
}

/// Reads one `[key, value]` pair of `nft -j` output, each a `{"concat": [...]}`.
fn parse_element(map: &'static str, pair: &Value) -> Result<Element, HostPortError> {
    let bad = || HostPortError::Listing(format!("unexpected element in map {map}: {pair}"));
    let parts = |value: &Value| -> Option<Vec<String>> {
        value["concat"]
            .as_array()?
            .iter()
            .map(|part| match part {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect()
    };
    let key = parts(&pair[0]).ok_or_else(bad)?;
    let value = parts(&pair[1]).ok_or_else(bad)?;
    let target: Ipv4Addr = value.first().and_then(|ip| ip.parse().ok()).ok_or_else(bad)?;
    Ok(Element { map, key: key.join(" . "), target, value: value.join(" . ") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_spelled_as_nft_lists_them() {
        let pod = Ipv4Addr::new(10, 244, 1, 5);
        let any = PortMapping { protocol: Protocol::Tcp, container_port: 80, host_port: 8080, host_ip: None };
        let listed = serde_json::json!([{"concat": ["tcp", 8080]}, {"concat": ["10.244.1.5", 80]}]);
        assert_eq!(parse_element(ANY_ADDRESS_MAP, &listed).unwrap(), Element::new(pod, &any));

        let on_ip = PortMapping { host_ip: Some(Ipv4Addr::new(10, 0, 0, 1)), protocol: Protocol::Udp, ..any };
        let listed = serde_json::json!([{"concat": ["10.0.0.1", "udp", 8080]}, {"concat": ["10.244.1.5", 80]}]);
        assert_eq!(parse_element(HOST_IP_MAP, &listed).unwrap(), Element::new(pod, &on_ip));
    }

    #[test]
    fn unreadable_elements_are_errors() {
        let listed = serde_json::json!([{"concat": ["tcp", 8080]}, {"concat": ["not-an-ip", 80]}]);
        assert!(matches!(parse_element(ANY_ADDRESS_MAP, &listed), Err(HostPortError::Listing(_))));
    }
}
