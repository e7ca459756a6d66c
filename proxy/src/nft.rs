//! Running `nft` in the node's network namespace.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::ruleset::{is_owned, Object};
use crate::ProxyError;

/// `nft`, run in the namespace at `netns` (or the process's own).
#[derive(Debug, Clone)]
pub struct Nft {
    netns: Option<PathBuf>,
}

impl Nft {
    pub fn new(netns: Option<PathBuf>) -> Self {
        Self { netns }
    }

    /// Applies `script` as one transaction: all of it or nothing.
    pub async fn apply(&self, script: String) -> Result<(), ProxyError> {
        self.run(vec!["-f".into(), "-".into()], Some(script)).await.map(drop)
    }

    /// The proxy's per-Service chains and sets now in `table` (none if there
    /// is no table yet): what an earlier run of the proxy left.
    pub async fn owned_objects(&self, table: &str) -> Result<BTreeSet<Object>, ProxyError> {
        let listing = match self.run(vec!["-j".into(), "list".into(), "table".into(), "ip".into(), table.into()], None).await {
            Ok(listing) => listing,
            Err(ProxyError::Nft { stderr }) if stderr.contains("No such file or directory") => return Ok(BTreeSet::new()),
            Err(error) => return Err(error),
        };
        parse_owned_objects(&listing)
    }

    async fn run(&self, args: Vec<String>, stdin: Option<String>) -> Result<String, ProxyError> {
        let netns = self.netns.clone();
        let output = tokio::task::spawn_blocking(move || -> std::io::Result<std::process::Output> {
            let mut command = Command::new("nft");
            command.args(&args).stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
            // Kept open until the child has started: its pre-exec hook enters it.
            let namespace = netns.as_ref().map(File::open).transpose()?;
            if let Some(namespace) = &namespace {
                let fd = namespace.as_raw_fd();
                // SAFETY: between fork and exec only setns runs, an
                // async-signal-safe system call on a descriptor this process owns.
                unsafe {
                    command.pre_exec(move || match libc::setns(fd, libc::CLONE_NEWNET) {
                        0 => Ok(()),
                        _ => Err(std::io::Error::last_os_error()),
                    });
                }
            }
            let mut child = command.spawn()?;
            if let (Some(script), Some(mut pipe)) = (stdin, child.stdin.take()) {
                pipe.write_all(script.as_bytes())?;
            }
            child.wait_with_output()
        })
        .await
        .map_err(|e| ProxyError::Spawn(std::io::Error::other(e)))?
        .map_err(ProxyError::Spawn)?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(ProxyError::Nft { stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned() })
        }
    }
}

/// The owned chains and sets in a `nft -j list table` listing. The fixed
/// chains and maps are left out: every sync declares them anyway.
fn parse_owned_objects(listing: &str) -> Result<BTreeSet<Object>, ProxyError> {
    let listing: Value = serde_json::from_str(listing).map_err(|e| ProxyError::Listing(format!("not JSON: {e}")))?;
    let objects = listing["nftables"].as_array().ok_or_else(|| ProxyError::Listing("no `nftables` array".into()))?;
    let mut owned = BTreeSet::new();
    for object in objects {
        let (found, name) = if let Some(chain) = object.get("chain") {
            (Object::Chain as fn(String) -> Object, &chain["name"])
        } else if let Some(set) = object.get("set") {
            (Object::Set as fn(String) -> Object, &set["name"])
        } else {
            continue;
        };
        let Some(name) = name.as_str() else { continue };
        let per_service = name.starts_with("ep-") || (name.starts_with("svc-") && name.contains('/'));
        if is_owned(name) && per_service {
            owned.insert(found(name.to_owned()));
        }
    }
    Ok(owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_yields_only_per_service_objects() {
        let listing = serde_json::json!({"nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "ip", "name": "r8s"}},
            {"chain": {"family": "ip", "table": "r8s", "name": "hostport_dnat"}},
            {"chain": {"family": "ip", "table": "r8s", "name": "svc-services"}},
            {"chain": {"family": "ip", "table": "r8s", "name": "svc-default/web/tcp/80"}},
            {"chain": {"family": "ip", "table": "r8s", "name": "ep-default/web/tcp/80/10.244.1.2/80"}},
            {"set": {"family": "ip", "table": "r8s", "name": "ep-default/web/tcp/80/10.244.1.2/80/affinity-60s"}},
            {"map": {"family": "ip", "table": "r8s", "name": "svc-ips"}},
        ]});
        let owned = parse_owned_objects(&listing.to_string()).unwrap();
        assert_eq!(
            owned.into_iter().collect::<Vec<_>>(),
            [
                Object::Chain("ep-default/web/tcp/80/10.244.1.2/80".into()),
                Object::Chain("svc-default/web/tcp/80".into()),
                Object::Set("ep-default/web/tcp/80/10.244.1.2/80/affinity-60s".into()),
            ]
        );
        assert!(matches!(parse_owned_objects("not json"), Err(ProxyError::Listing(_))));
    }
}
