//! The pods bound to nodes, from one watch, routed to each node's agent: an
//! agent alone watches `spec.nodeName=<its node>`; a fleet of hollow agents
//! in one process shares one watch of every pod (thousands of watches, or of
//! handlers each looking at every change, would cost as many times more).
//! Each agent hears of its own pods' changes and knows which are bound to it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use client::informer::{Change, Informer};
use client::k8s_openapi::api::core::v1::Pod;
use client::kube::runtime::watcher;
use client::kube::{Api, Client};
use tokio::sync::mpsc;

/// A change of one pod: its key and uid.
pub type PodChange = (String, String);

#[derive(Default)]
struct Route {
    changes: Option<mpsc::UnboundedSender<PodChange>>,
    /// The uids of the pods bound to the node now.
    bound: HashSet<String>,
}

type Routes = Arc<RwLock<HashMap<String, Route>>>;

/// One watch of pods, routed by node.
pub struct PodFeeds {
    informer: Informer<Pod>,
    routes: Routes,
    _watch: client::AbortOnDrop,
}

fn lock_write(routes: &Routes) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Route>> {
    routes.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl PodFeeds {
    /// Watches the pods that `fields` selects (`spec.nodeName=<node>` for one
    /// agent; `None` for every pod).
    pub fn start(client: &Client, fields: Option<&str>) -> Self {
        let informer = Informer::new();
        let routes: Routes = Arc::default();
        let routing = routes.clone();
        informer.on_change(move |change: &Change<Pod>| {
            let pod = change.object();
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else { return };
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let mut routes = lock_write(&routing);
            let route = routes.entry(node.to_string()).or_default();
            match change {
                Change::Deleted(_) => route.bound.remove(&uid),
                Change::Applied { .. } => route.bound.insert(uid.clone()),
            };
            if let Some(changes) = &route.changes {
                let key = client::object_key(pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref().unwrap_or_default());
                let _ = changes.send((key, uid));
            }
        });
        let config = match fields {
            Some(fields) => watcher::Config::default().fields(fields),
            None => watcher::Config::default(),
        };
        let watch = informer.start(Api::all(client.clone()), config);
        Self { informer, routes, _watch: client::AbortOnDrop(vec![watch]) }
    }

    /// The feed of `node`'s pods; a second subscription replaces the first.
    /// Pods bound before it are sent to it at once.
    pub fn subscribe(&self, node: &str) -> PodFeed {
        let (sender, changes) = mpsc::unbounded_channel();
        let mut routes = lock_write(&self.routes);
        let route = routes.entry(node.to_string()).or_default();
        for pod in self.informer.list().iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)) {
            let key = client::object_key(pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref().unwrap_or_default());
            let _ = sender.send((key, pod.metadata.uid.clone().unwrap_or_default()));
        }
        route.changes = Some(sender);
        PodFeed { informer: self.informer.clone(), changes, node: node.to_string(), routes: self.routes.clone() }
    }

    pub async fn wait_synced(&self) {
        self.informer.wait_synced().await;
    }
}

/// One node's pods.
pub struct PodFeed {
    /// Every pod the watch has (look up yours by key).
    pub informer: Informer<Pod>,
    pub changes: mpsc::UnboundedReceiver<PodChange>,
    node: String,
    routes: Routes,
}

impl PodFeed {
    /// The uids of the pods bound to this node now.
    pub fn bound(&self) -> HashSet<String> {
        self.routes.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&self.node).map(|r| r.bound.clone()).unwrap_or_default()
    }
}
