//! Facts about this machine that the Node object reports.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::Path;

/// What the node registers as capacity and `nodeInfo`.
#[derive(Debug, Clone)]
pub struct Host {
    pub cpus: usize,
    pub memory_bytes: u64,
    pub storage_bytes: u64,
    pub kernel: String,
    pub os_image: String,
    /// Go's architecture names (`amd64`, `arm64`), as Kubernetes labels use.
    pub architecture: &'static str,
    pub machine_id: String,
    pub boot_id: String,
    /// How many pods the node takes.
    pub max_pods: i64,
}

impl Host {
    /// Reads the host; `data_dir` is the file system whose size is the node's
    /// ephemeral storage.
    pub fn probe(data_dir: &Path) -> Self {
        let read = |path: &str| std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default();
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes: mem_total(&read("/proc/meminfo")).unwrap_or(0),
            storage_bytes: storage_size(data_dir).unwrap_or(0),
            kernel: read("/proc/sys/kernel/osrelease"),
            os_image: os_image(&read("/etc/os-release")).unwrap_or_else(|| "Linux".into()),
            architecture: go_arch(std::env::consts::ARCH),
            machine_id: read("/etc/machine-id"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            max_pods: crate::node::MAX_PODS,
        }
    }

    /// A made-up machine for hollow node `index`: its capacity as given.
    pub fn simulated(index: usize, cpus: usize, memory_bytes: u64, max_pods: i64) -> Self {
        Self {
            cpus,
            memory_bytes,
            storage_bytes: 100 << 30,
            kernel: "hollow".into(),
            os_image: "r8s hollow node".into(),
            architecture: go_arch(std::env::consts::ARCH),
            machine_id: format!("hollow-{index}"),
            boot_id: format!("hollow-{index}"),
            max_pods,
        }
    }
}

/// `MemTotal` of /proc/meminfo in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `PRETTY_NAME` of /etc/os-release.
fn os_image(os_release: &str) -> Option<String> {
    let value = os_release.lines().find_map(|l| l.strip_prefix("PRETTY_NAME="))?;
    Some(value.trim_matches('"').to_string())
}

fn storage_size(path: &Path) -> Option<u64> {
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a zeroed statvfs for the kernel to fill.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    (rc == 0).then(|| stat.f_blocks as u64 * stat.f_frsize as u64)
}

fn go_arch(rust_arch: &'static str) -> &'static str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The address other machines reach this one at: the source address of the
/// default route (found without sending anything), else loopback.
pub fn node_ip() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.connect("192.0.2.1:9")?;
        Ok(socket.local_addr()?.ip())
    };
    probe().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        assert_eq!(mem_total("MemTotal:       4028436 kB\nMemFree: 1 kB\n"), Some(4028436 * 1024));
        assert_eq!(os_image("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n").as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
        assert_eq!(go_arch("x86_64"), "amd64");
    }

    #[test]
    fn reads_this_host() {
        let host = Host::probe(Path::new("/"));
        assert!(host.cpus >= 1 && host.memory_bytes > 0 && host.storage_bytes > 0);
        assert!(!host.kernel.is_empty());
    }
}
