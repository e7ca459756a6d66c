//! The nftables script that brings the proxy's part of the node's table to
//! the wanted state in one transaction (`nft -f -` applies a file atomically).
//!
//! The layout follows kube-proxy's nftables mode:
//!
//! ```text
//! svc-nat-prerouting / svc-nat-output (nat, dstnat)  → svc-services
//! svc-services: ip daddr . proto . port  vmap @svc-ips       → goto svc-<id>
//!               local daddr: proto . port vmap @nodeports    → goto svc-<id>/external
//! svc-<id>/external: mark for masquerade, goto svc-<id>
//! svc-<id>: mark hairpin if from a (pod) bridge; affinity lookups; numgen random mod N → goto ep-<id>/<ip>/<port>
//! ep-<id>/<ip>/<port>: update affinity set; dnat to ip:port
//! svc-filter-{input,forward,output} (filter, ct state new) → svc-endpoints-check:
//!               @svc-no-endpoint-ips / @nodeports-no-endpoints → goto svc-reject
//! svc-nat-postrouting (srcnat): masquerade marked packets; hairpin-marked ones
//!               only when they leave through a bridge
//! ```
//!
//! Every object the proxy owns is named `svc-*`, `ep-*` or `nodeports*`, so
//! other r8s chains (hostPorts) live beside them in the same table: the
//! script never flushes or deletes the table or anything else in it.

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::model::ServicePort;

/// Packets that must leave with the node's address (node ports): as kube-proxy.
const MASQUERADE_MARK: u32 = 0x4000;
/// Packets from a pod bridge sent to a Service: masqueraded only if their
/// endpoint is behind a bridge too, so the endpoint's answer comes back
/// through the node (and its connection tracking) instead of going straight
/// to the client, which expects it from the Service's address, and a pod
/// that reaches itself does not get a packet from its own address. Bridges
/// are matched by kind, not name: the runtime's bridge name is its own choice.
const HAIRPIN_MARK: u32 = 0x2000;

/// Base chains: (name, type, hook, priority), kube-proxy's priorities.
const BASE_CHAINS: [(&str, &str, &str, i32); 6] = [
    ("svc-nat-prerouting", "nat", "prerouting", -100),
    ("svc-nat-output", "nat", "output", -100),
    ("svc-nat-postrouting", "nat", "postrouting", 100),
    ("svc-filter-input", "filter", "input", -110),
    ("svc-filter-forward", "filter", "forward", -110),
    ("svc-filter-output", "filter", "output", -110),
];
const FIXED_CHAINS: [&str; 5] = ["svc-services", "svc-endpoints-check", "svc-mark-for-masquerade", "svc-masquerading", "svc-reject"];
/// Maps: (name, key type). All map to verdicts.
const MAPS: [(&str, &str); 4] = [
    ("svc-ips", "ipv4_addr . inet_proto . inet_service"),
    ("nodeports", "inet_proto . inet_service"),
    ("svc-no-endpoint-ips", "ipv4_addr . inet_proto . inet_service"),
    ("nodeports-no-endpoints", "inet_proto . inet_service"),
];

/// A per-Service object of the proxy's, found again to delete it when its
/// Service or endpoint goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Object {
    Chain(String),
    Set(String),
}

/// Whether an object name in the table is the proxy's.
pub fn is_owned(name: &str) -> bool {
    name.starts_with("svc-") || name.starts_with("ep-") || name.starts_with("nodeports")
}

/// The script for one sync, and the per-Service objects it leaves in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    pub script: String,
    pub objects: BTreeSet<Object>,
}

/// Renders the script that makes the proxy's part of `table` program exactly
/// `ports`, and deletes the objects of `existing` no longer wanted.
pub fn render(table: &str, ports: &[ServicePort], existing: &BTreeSet<Object>) -> Ruleset {
    let mut script = Script { table, text: String::new() };
    let mut objects = BTreeSet::new();
    script.line(format_args!("add table ip {table}"));
    for (name, kind, hook, priority) in BASE_CHAINS {
        script.line(format_args!("add chain ip {table} {name} {{ type {kind} hook {hook} priority {priority}; }}"));
        script.line(format_args!("flush chain ip {table} {name}"));
    }
    for name in FIXED_CHAINS {
        script.line(format_args!("add chain ip {table} {name}"));
        script.line(format_args!("flush chain ip {table} {name}"));
    }
    for (name, key) in MAPS {
        script.line(format_args!("add map ip {table} {name} {{ type {key} : verdict; }}"));
        script.line(format_args!("flush map ip {table} {name}"));
    }
    // Declared before any rule refers to them.
    for port in ports.iter().filter(|port| !port.endpoints.is_empty()) {
        let id = port.id();
        let mut chains = vec![format!("svc-{id}")];
        if port.node_port.is_some() {
            chains.push(format!("svc-{id}/external"));
        }
        for endpoint in &port.endpoints {
            chains.push(format!("ep-{id}/{}/{}", endpoint.ip, endpoint.port));
            if let Some(timeout) = port.affinity_timeout_seconds {
                // The timeout is part of the name: a set's timeout cannot change,
                // a changed one makes a new set and the old one goes as stale.
                let set = affinity_set(&id, endpoint, timeout);
                script.line(format_args!(
                    "add set ip {table} {set} {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}"
                ));
                objects.insert(Object::Set(set));
            }
        }
        for chain in chains {
            script.line(format_args!("add chain ip {table} {chain}"));
            script.line(format_args!("flush chain ip {table} {chain}"));
            objects.insert(Object::Chain(chain));
        }
    }

    script.rule("svc-nat-prerouting", "jump svc-services");
    script.rule("svc-nat-output", "jump svc-services");
    script.rule("svc-nat-postrouting", "jump svc-masquerading");
    for chain in ["svc-filter-input", "svc-filter-forward", "svc-filter-output"] {
        script.rule(chain, "ct state new jump svc-endpoints-check");
    }
    // Node ports answer on every local address but loopback, as kube-proxy's
    // nftables mode (a DNAT from 127.0.0.1 to a pod cannot be answered).
    let local = "fib daddr type local ip daddr != 127.0.0.0/8";
    script.rule("svc-services", "ip daddr . meta l4proto . th dport vmap @svc-ips");
    script.rule("svc-services", &format!("{local} meta l4proto . th dport vmap @nodeports"));
    script.rule("svc-endpoints-check", "ip daddr . meta l4proto . th dport vmap @svc-no-endpoint-ips");
    script.rule("svc-endpoints-check", &format!("{local} meta l4proto . th dport vmap @nodeports-no-endpoints"));
    script.rule("svc-mark-for-masquerade", &format!("meta mark set meta mark | {MASQUERADE_MARK:#x}"));
    script.rule("svc-masquerading", &format!("meta mark & {MASQUERADE_MARK:#x} == {MASQUERADE_MARK:#x} masquerade fully-random"));
    script.rule(
        "svc-masquerading",
        &format!("meta mark & {HAIRPIN_MARK:#x} == {HAIRPIN_MARK:#x} meta oifkind \"bridge\" masquerade fully-random"),
    );
    script.rule("svc-reject", "meta l4proto tcp reject with tcp reset");
    script.rule("svc-reject", "reject");

    for port in ports {
        render_port(&mut script, port);
    }

    let stale: Vec<&Object> = existing.difference(&objects).collect();
    // Emptied first: a stale chain may still jump to another stale one.
    for object in &stale {
        if let Object::Chain(chain) = object {
            script.line(format_args!("flush chain ip {table} {chain}"));
        }
    }
    for object in &stale {
        match object {
            Object::Chain(chain) => script.line(format_args!("delete chain ip {table} {chain}")),
            Object::Set(set) => script.line(format_args!("delete set ip {table} {set}")),
        }
    }
    Ruleset { script: script.text, objects }
}

fn affinity_set(id: &str, endpoint: &crate::model::Endpoint, timeout: u32) -> String {
    format!("ep-{id}/{}/{}/affinity-{timeout}s", endpoint.ip, endpoint.port)
}

/// The map elements and chains of one Service port.
fn render_port(script: &mut Script, port: &ServicePort) {
    let table = script.table;
    let id = port.id();
    let service_chain = format!("svc-{id}");
    let (ip, protocol, number) = (port.cluster_ip, port.protocol, port.port);
    if port.endpoints.is_empty() {
        script.line(format_args!("add element ip {table} svc-no-endpoint-ips {{ {ip} . {protocol} . {number} : goto svc-reject }}"));
        if let Some(node_port) = port.node_port {
            script.line(format_args!("add element ip {table} nodeports-no-endpoints {{ {protocol} . {node_port} : goto svc-reject }}"));
        }
        return;
    }
    script.line(format_args!("add element ip {table} svc-ips {{ {ip} . {protocol} . {number} : goto {service_chain} }}"));
    if let Some(node_port) = port.node_port {
        let external = format!("{service_chain}/external");
        script.line(format_args!("add element ip {table} nodeports {{ {protocol} . {node_port} : goto {external} }}"));
        script.rule(&external, "jump svc-mark-for-masquerade");
        script.rule(&external, &format!("goto {service_chain}"));
    }

    script.rule(&service_chain, &format!("meta iifkind \"bridge\" meta mark set meta mark | {HAIRPIN_MARK:#x}"));
    let endpoint_chains: Vec<String> =
        port.endpoints.iter().map(|endpoint| format!("ep-{id}/{}/{}", endpoint.ip, endpoint.port)).collect();
    if let Some(timeout) = port.affinity_timeout_seconds {
        for (endpoint, chain) in port.endpoints.iter().zip(&endpoint_chains) {
            script.rule(&service_chain, &format!("ip saddr @{} goto {chain}", affinity_set(&id, endpoint, timeout)));
        }
    }
    match endpoint_chains.as_slice() {
        [only] => script.rule(&service_chain, &format!("goto {only}")),
        all => {
            let choices: Vec<String> = all.iter().enumerate().map(|(n, chain)| format!("{n} : goto {chain}")).collect();
            script.rule(&service_chain, &format!("numgen random mod {} vmap {{ {} }}", all.len(), choices.join(", ")));
        }
    }

    for (endpoint, chain) in port.endpoints.iter().zip(&endpoint_chains) {
        if let Some(timeout) = port.affinity_timeout_seconds {
            script.rule(chain, &format!("update @{} {{ ip saddr }}", affinity_set(&id, endpoint, timeout)));
        }
        script.rule(chain, &format!("meta l4proto {protocol} dnat to {}:{}", endpoint.ip, endpoint.port));
    }
}

struct Script<'a> {
    table: &'a str,
    text: String,
}

impl Script<'_> {
    fn line(&mut self, line: std::fmt::Arguments<'_>) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, "{line}");
    }

    fn rule(&mut self, chain: &str, rule: &str) {
        let table = self.table;
        self.line(format_args!("add rule ip {table} {chain} {rule}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, Protocol};

    fn port(endpoints: &[(&str, u16)]) -> ServicePort {
        ServicePort {
            namespace: "default".into(),
            service: "web".into(),
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            cluster_ip: "10.96.0.20".parse().unwrap(),
            port: 80,
            node_port: None,
            affinity_timeout_seconds: None,
            endpoints: endpoints.iter().map(|(ip, port)| Endpoint { ip: ip.parse().unwrap(), port: *port }).collect(),
        }
    }

    /// The lines of the script about Services (map elements and those naming
    /// a Service), in order.
    fn service_lines(ruleset: &Ruleset) -> Vec<&str> {
        ruleset.script.lines().filter(|line| line.contains("default/") || line.starts_with("add element")).collect()
    }

    #[test]
    fn fixed_part_hooks_the_service_chains_and_leaves_the_table_alone() {
        let ruleset = render("r8s", &[], &BTreeSet::new());
        let script = &ruleset.script;
        assert!(script.starts_with("add table ip r8s\nadd chain ip r8s svc-nat-prerouting { type nat hook prerouting priority -100; }\n"));
        for expected in [
            "add rule ip r8s svc-nat-prerouting jump svc-services",
            "add rule ip r8s svc-nat-output jump svc-services",
            "add rule ip r8s svc-filter-forward ct state new jump svc-endpoints-check",
            "add rule ip r8s svc-services ip daddr . meta l4proto . th dport vmap @svc-ips",
            "add rule ip r8s svc-services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @nodeports",
            "add rule ip r8s svc-masquerading meta mark & 0x2000 == 0x2000 meta oifkind \"bridge\" masquerade fully-random",
        ] {
            assert!(script.lines().any(|line| line == expected), "missing {expected:?} in\n{script}");
        }
        for line in script.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            assert!(!matches!(words[..2], ["delete", "table"] | ["flush", "table"] | ["flush", "ruleset"]), "{line}");
            if let ["add" | "flush", "chain" | "map", "ip", "r8s", name, ..] = words[..] {
                assert!(is_owned(name), "{name} is not a proxy name");
            }
        }
        assert!(ruleset.objects.is_empty());
    }

    #[test]
    fn endpoints_share_the_load_evenly() {
        let ruleset = render("r8s", &[port(&[("10.244.1.2", 8080), ("10.244.1.3", 8080)])], &BTreeSet::new());
        assert_eq!(
            service_lines(&ruleset),
            [
                "add chain ip r8s svc-default/web/tcp/http",
                "flush chain ip r8s svc-default/web/tcp/http",
                "add chain ip r8s ep-default/web/tcp/http/10.244.1.2/8080",
                "flush chain ip r8s ep-default/web/tcp/http/10.244.1.2/8080",
                "add chain ip r8s ep-default/web/tcp/http/10.244.1.3/8080",
                "flush chain ip r8s ep-default/web/tcp/http/10.244.1.3/8080",
                "add element ip r8s svc-ips { 10.96.0.20 . tcp . 80 : goto svc-default/web/tcp/http }",
                "add rule ip r8s svc-default/web/tcp/http meta iifkind \"bridge\" meta mark set meta mark | 0x2000",
                "add rule ip r8s svc-default/web/tcp/http numgen random mod 2 vmap { 0 : goto ep-default/web/tcp/http/10.244.1.2/8080, 1 : goto ep-default/web/tcp/http/10.244.1.3/8080 }",
                "add rule ip r8s ep-default/web/tcp/http/10.244.1.2/8080 meta l4proto tcp dnat to 10.244.1.2:8080",
                "add rule ip r8s ep-default/web/tcp/http/10.244.1.3/8080 meta l4proto tcp dnat to 10.244.1.3:8080",
            ]
        );
    }

    #[test]
    fn node_ports_masquerade_and_affinity_sticks() {
        let mut sticky = port(&[("10.244.1.2", 8080)]);
        sticky.node_port = Some(30080);
        sticky.affinity_timeout_seconds = Some(60);
        let ruleset = render("r8s", &[sticky], &BTreeSet::new());
        assert_eq!(
            service_lines(&ruleset),
            [
                "add set ip r8s ep-default/web/tcp/http/10.244.1.2/8080/affinity-60s { type ipv4_addr; flags dynamic,timeout; timeout 60s; }",
                "add chain ip r8s svc-default/web/tcp/http",
                "flush chain ip r8s svc-default/web/tcp/http",
                "add chain ip r8s svc-default/web/tcp/http/external",
                "flush chain ip r8s svc-default/web/tcp/http/external",
                "add chain ip r8s ep-default/web/tcp/http/10.244.1.2/8080",
                "flush chain ip r8s ep-default/web/tcp/http/10.244.1.2/8080",
                "add element ip r8s svc-ips { 10.96.0.20 . tcp . 80 : goto svc-default/web/tcp/http }",
                "add element ip r8s nodeports { tcp . 30080 : goto svc-default/web/tcp/http/external }",
                "add rule ip r8s svc-default/web/tcp/http/external jump svc-mark-for-masquerade",
                "add rule ip r8s svc-default/web/tcp/http/external goto svc-default/web/tcp/http",
                "add rule ip r8s svc-default/web/tcp/http meta iifkind \"bridge\" meta mark set meta mark | 0x2000",
                "add rule ip r8s svc-default/web/tcp/http ip saddr @ep-default/web/tcp/http/10.244.1.2/8080/affinity-60s goto ep-default/web/tcp/http/10.244.1.2/8080",
                "add rule ip r8s svc-default/web/tcp/http goto ep-default/web/tcp/http/10.244.1.2/8080",
                "add rule ip r8s ep-default/web/tcp/http/10.244.1.2/8080 update @ep-default/web/tcp/http/10.244.1.2/8080/affinity-60s { ip saddr }",
                "add rule ip r8s ep-default/web/tcp/http/10.244.1.2/8080 meta l4proto tcp dnat to 10.244.1.2:8080",
            ]
        );
    }

    #[test]
    fn no_endpoints_reject_and_stale_objects_go() {
        let mut empty = port(&[]);
        empty.node_port = Some(30080);
        let before = render("r8s", &[port(&[("10.244.1.2", 8080)])], &BTreeSet::new());
        let ruleset = render("r8s", &[empty], &before.objects);
        assert_eq!(
            service_lines(&ruleset),
            [
                "add element ip r8s svc-no-endpoint-ips { 10.96.0.20 . tcp . 80 : goto svc-reject }",
                "add element ip r8s nodeports-no-endpoints { tcp . 30080 : goto svc-reject }",
                "flush chain ip r8s ep-default/web/tcp/http/10.244.1.2/8080",
                "flush chain ip r8s svc-default/web/tcp/http",
                "delete chain ip r8s ep-default/web/tcp/http/10.244.1.2/8080",
                "delete chain ip r8s svc-default/web/tcp/http",
            ]
        );
    }
}
