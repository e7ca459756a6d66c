//! The files every container of a pod sees at `/etc/hosts`, `/etc/hostname`
//! and `/etc/resolv.conf`, written once per pod (as the kubelet and
//! containerd do) and bind-mounted into each container.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k8s_cri::v1::DnsConfig;

/// The three files, by their place in the container.
pub const FILES: [(&str, &str); 3] = [("hosts", "/etc/hosts"), ("hostname", "/etc/hostname"), ("resolv.conf", "/etc/resolv.conf")];

/// What the pod's files say.
pub struct PodEtc<'a> {
    pub hostname: &'a str,
    /// The pod's address, `None` with the node's network.
    pub pod_ip: Option<IpAddr>,
    pub dns: Option<&'a DnsConfig>,
    /// The node's `/etc` (its hosts and resolv.conf are the defaults).
    pub node_etc: &'a Path,
}

/// Writes the files into `dir`; returns (host file, container path) pairs.
pub fn write(dir: &Path, pod: &PodEtc) -> std::io::Result<Vec<(PathBuf, &'static str)>> {
    let hosts = match pod.pod_ip {
        Some(ip) => pod_hosts(pod.hostname, ip),
        // A pod on the node's network sees the node's hosts file.
        None => std::fs::read_to_string(pod.node_etc.join("hosts")).unwrap_or_else(|_| pod_hosts(pod.hostname, IpAddr::from([127, 0, 1, 1]))),
    };
    let resolv = match pod.dns {
        Some(dns) => resolv_conf(dns),
        None => std::fs::read_to_string(pod.node_etc.join("resolv.conf")).unwrap_or_default(),
    };
    let contents = [hosts, format!("{}\n", pod.hostname), resolv];
    let mut written = Vec::new();
    for ((name, target), content) in FILES.iter().zip(contents) {
        let path = dir.join(name);
        std::fs::write(&path, content)?;
        written.push((path, *target));
    }
    Ok(written)
}

/// The kubelet's managed hosts file.
fn pod_hosts(hostname: &str, ip: IpAddr) -> String {
    format!(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n{ip}\t{hostname}\n"
    )
}

fn resolv_conf(dns: &DnsConfig) -> String {
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        out.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_say_what_the_pod_is() {
        let dir = tempfile::tempdir().unwrap();
        let dns = DnsConfig { servers: vec!["10.96.0.10".into()], searches: vec!["default.svc.cluster.local".into()], options: vec!["ndots:5".into()] };
        let pod = PodEtc { hostname: "web-0", pod_ip: Some("10.244.0.5".parse().unwrap()), dns: Some(&dns), node_etc: dir.path() };
        let written = write(dir.path(), &pod).unwrap();
        assert_eq!(written.len(), 3);
        let hosts = std::fs::read_to_string(dir.path().join("hosts")).unwrap();
        assert!(hosts.contains("10.244.0.5\tweb-0\n") && hosts.contains("127.0.0.1\tlocalhost"));
        assert_eq!(std::fs::read_to_string(dir.path().join("hostname")).unwrap(), "web-0\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("resolv.conf")).unwrap(),
            "search default.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
    }
}
