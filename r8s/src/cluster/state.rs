//! What a cluster is, written when it is first made (`<data>/cluster.json`)
//! and read by every later `r8s up` of the same name, which resumes the same
//! cluster from it: its shape, its listener and its address ranges. Flags
//! that contradict it are refused rather than silently ignored.

use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// The file's format version: a newer r8s may read older files, never guess at newer ones.
const VERSION: u32 = 1;

/// How the cluster's nodes are laid out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Shape {
    /// One node on this machine's own network (its pods on bridge `r8s0`).
    Host { node_name: String, pod_cidr: String },
    /// `nodes` nodes and `servers` API servers, each node in a network
    /// namespace of its own behind the cluster's hub namespace.
    Namespaced { nodes: usize, servers: usize, cluster_cidr: String },
}

impl Shape {
    pub fn server_count(&self) -> usize {
        match self {
            Shape::Host { .. } => 1,
            Shape::Namespaced { servers, .. } => *servers,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Shape::Host { .. } => "a one-node cluster on this machine's network".into(),
            Shape::Namespaced { nodes, servers, .. } => {
                let plural = |n: usize, what: &str| if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") };
                format!("{} and {} in network namespaces", plural(*servers, "server"), plural(*nodes, "node"))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterState {
    pub version: u32,
    pub shape: Shape,
    /// host:port of the API on this machine.
    pub listen: String,
}

impl ClusterState {
    pub fn new(shape: Shape, listen: String) -> Self {
        Self { version: VERSION, shape, listen }
    }

    /// Reads the state of an existing cluster; `None` when there is none yet.
    /// A file that cannot be read is an error that names it and says what to do.
    pub fn read(path: &Path, cluster: &str) -> anyhow::Result<Option<Self>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
        };
        let advice = format!("fix or restore it, or remove the cluster and all its data with `r8s down {cluster}`");
        let state: ClusterState = serde_json::from_str(&text).map_err(|error| anyhow::anyhow!("the state of cluster {cluster} in {} is corrupt ({error}); {advice}", path.display()))?;
        if state.version > VERSION {
            bail!("{} was written by a newer r8s (format {}, this one reads up to {VERSION}); use that r8s, or {advice}", path.display(), state.version);
        }
        Ok(Some(state))
    }

    /// Writes the file whole or not at all (a crash leaves the old one or none).
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let temporary = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&temporary, text).with_context(|| format!("cannot write {}", temporary.display()))?;
        std::fs::rename(&temporary, path).with_context(|| format!("cannot write {}", path.display()))
    }

    /// The state to run with: the stored one, checked against what the
    /// command line asked for explicitly.
    pub fn resume(self, cluster: &str, request: &Request) -> anyhow::Result<Self> {
        if let Some(conflict) = request.conflict(&self.shape) {
            bail!(
                "cluster {cluster} is {} ({conflict}); resume it as it is with `r8s up --name {cluster}`, or remove it with `r8s down {cluster}` first",
                self.shape.describe()
            );
        }
        if let Some(listen) = request.listen.as_deref().filter(|listen| *listen != self.listen) {
            bail!("cluster {cluster} serves its API on {}, not {listen} (its kubeconfig says so); resume it without --listen, or remove it with `r8s down {cluster}` first", self.listen);
        }
        Ok(self)
    }
}

/// What the command line asked for: only what it says explicitly, so that
/// resuming a cluster made with other defaults is not taken for a conflict.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub nodes: Option<usize>,
    pub servers: Option<usize>,
    pub cluster_cidr: Option<String>,
    pub pod_cidr: Option<String>,
    pub node_name: Option<String>,
    pub listen: Option<String>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:6443";
pub const DEFAULT_CLUSTER_CIDR: &str = "10.244.0.0/16";
pub const DEFAULT_POD_CIDR: &str = "10.88.0.0/16";

impl Request {
    /// The state of a new cluster; `default_node_name` names a one-node cluster's node.
    pub fn fresh(&self, default_node_name: impl FnOnce() -> String) -> ClusterState {
        let shape = match self.nodes {
            Some(nodes) => Shape::Namespaced {
                nodes,
                servers: self.servers.unwrap_or(1),
                cluster_cidr: self.cluster_cidr.clone().unwrap_or_else(|| DEFAULT_CLUSTER_CIDR.into()),
            },
            None => Shape::Host {
                node_name: self.node_name.clone().unwrap_or_else(default_node_name),
                pod_cidr: self.pod_cidr.clone().unwrap_or_else(|| DEFAULT_POD_CIDR.into()),
            },
        };
        ClusterState::new(shape, self.listen.clone().unwrap_or_else(|| DEFAULT_LISTEN.into()))
    }

    /// How the request contradicts an existing cluster's shape, if it does.
    fn conflict(&self, shape: &Shape) -> Option<String> {
        let differs = |asked: &Option<String>, stored: &str, flag: &str| asked.as_deref().filter(|asked| *asked != stored).map(|asked| format!("{flag} {stored}, not {asked}"));
        match shape {
            Shape::Host { node_name, pod_cidr } => {
                if let Some(nodes) = self.nodes {
                    return Some(format!("not --nodes {nodes}"));
                }
                differs(&self.pod_cidr, pod_cidr, "--pod-cidr").or_else(|| differs(&self.node_name, node_name, "--node-name"))
            }
            Shape::Namespaced { nodes, servers, cluster_cidr } => {
                if self.pod_cidr.is_some() || self.node_name.is_some() {
                    return Some("--pod-cidr and --node-name are for one-node clusters".into());
                }
                let count = |asked: Option<usize>, stored: usize, flag: &str| asked.filter(|asked| *asked != stored).map(|asked| format!("{flag} {stored}, not {asked}"));
                count(self.nodes, *nodes, "--nodes")
                    .or_else(|| count(self.servers, *servers, "--servers"))
                    .or_else(|| differs(&self.cluster_cidr, cluster_cidr, "--cluster-cidr"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three_nodes() -> Shape {
        Shape::Namespaced { nodes: 3, servers: 1, cluster_cidr: "10.244.0.0/16".into() }
    }

    #[test]
    fn state_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.json");
        assert_eq!(ClusterState::read(&path, "dev").unwrap(), None);
        let state = ClusterState::new(three_nodes(), "127.0.0.1:6443".into());
        state.write(&path).unwrap();
        assert_eq!(ClusterState::read(&path, "dev").unwrap(), Some(state));
    }

    #[test]
    fn a_corrupt_file_is_named_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.json");
        std::fs::write(&path, "{\"version\": 1, \"shape\": ").unwrap();
        let message = ClusterState::read(&path, "dev").unwrap_err().to_string();
        assert!(message.starts_with(&format!("the state of cluster dev in {} is corrupt (", path.display())), "{message}");
        assert!(message.ends_with("or remove the cluster and all its data with `r8s down dev`"), "{message}");
    }

    #[test]
    fn a_fresh_request_fills_in_the_defaults() {
        let host = Request::default().fresh(|| "box".into());
        assert_eq!(host, ClusterState::new(Shape::Host { node_name: "box".into(), pod_cidr: DEFAULT_POD_CIDR.into() }, DEFAULT_LISTEN.into()));
        let nodes = Request { nodes: Some(3), ..Default::default() }.fresh(|| unreachable!());
        assert_eq!(nodes.shape, three_nodes());
    }

    #[test]
    fn resuming_takes_what_is_stored_and_refuses_what_contradicts_it() {
        let state = ClusterState::new(three_nodes(), "127.0.0.1:6443".into());
        assert_eq!(state.clone().resume("dev", &Request::default()).unwrap(), state);
        let same = Request { nodes: Some(3), listen: Some("127.0.0.1:6443".into()), ..Default::default() };
        assert_eq!(state.clone().resume("dev", &same).unwrap(), state);
        let more = Request { nodes: Some(4), ..Default::default() };
        assert_eq!(
            state.clone().resume("dev", &more).unwrap_err().to_string(),
            "cluster dev is 1 server and 3 nodes in network namespaces (--nodes 3, not 4); resume it as it is with `r8s up --name dev`, or remove it with `r8s down dev` first"
        );
        let host = Request { pod_cidr: Some("10.88.0.0/16".into()), ..Default::default() };
        assert!(state.clone().resume("dev", &host).is_err());
        let moved = Request { listen: Some("127.0.0.1:7000".into()), ..Default::default() };
        assert!(state.resume("dev", &moved).unwrap_err().to_string().starts_with("cluster dev serves its API on 127.0.0.1:6443, not 127.0.0.1:7000"));
    }
}
