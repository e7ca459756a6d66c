//! The node's Service proxy: kube-proxy in nftables mode. It watches Services
//! and Endpoints through the API and programs the node's nftables table (`ip
//! r8s`) so that a Service's cluster IP and node ports reach its ready
//! endpoints, evenly, from pods, from the node itself and from other hosts.
//!
//! - [`model`]: Services and Endpoints → the Service ports to program;
//! - [`ruleset`]: Service ports → one nftables transaction;
//! - [`nft`]: running `nft` in the node's namespace.
//!
//! Every sync rewrites the proxy's whole part of the table in one `nft -f`
//! transaction, so a packet always meets either the old or the new rules.
//! Syncs follow changes after a short pause that collapses bursts, and run
//! now and then anyway to repair rules someone else removed.

pub mod model;
pub mod nft;
pub mod ruleset;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use client::informer::Informer;
use client::AbortOnDrop;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::runtime::watcher;
use kube::Api;
use tokio::sync::{watch, Notify};

pub use model::{service_ports, Endpoint, Protocol, ServicePort};

/// What can go wrong programming the rules.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("running nft: {0}")]
    Spawn(std::io::Error),
    #[error("nft failed: {stderr}")]
    Nft { stderr: String },
    #[error("nft printed output the proxy cannot read: {0}")]
    Listing(String),
}

/// How the proxy is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// The nftables table (family `ip`), shared with the runtime's hostPorts.
    pub table: String,
    /// The node's network namespace; `None`: the process's own.
    pub netns: Option<PathBuf>,
    /// How long a sync waits after a change for more changes to come.
    pub burst_window: Duration,
    /// Syncs happen at least this often, changes or not.
    pub resync_period: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            table: "r8s".into(),
            netns: None,
            burst_window: Duration::from_millis(20),
            resync_period: Duration::from_secs(30),
        }
    }
}

/// The proxy's rules in the table, programmed as a whole.
pub struct Rules {
    config: Config,
    nft: nft::Nft,
    /// The per-Service objects in the table; `None` until listed (at start,
    /// and after a failed sync left the table in a state the proxy does not know).
    objects: Option<BTreeSet<ruleset::Object>>,
}

impl Rules {
    pub fn new(config: &Config) -> Self {
        Self { config: config.clone(), nft: nft::Nft::new(config.netns.clone()), objects: None }
    }

    /// Makes the table program exactly `ports`, in one transaction.
    pub async fn program(&mut self, ports: &[ServicePort]) -> Result<(), ProxyError> {
        let existing = match self.objects.take() {
            Some(objects) => objects,
            None => self.nft.owned_objects(&self.config.table).await?,
        };
        let rendered = ruleset::render(&self.config.table, ports, &existing);
        self.nft.apply(rendered.script).await?;
        self.objects = Some(rendered.objects);
        Ok(())
    }
}

/// The Service ports the informers' caches describe, sorted.
fn desired(services: &Informer<Service>, endpoints: &Informer<Endpoints>) -> Vec<ServicePort> {
    let mut ports: Vec<ServicePort> = services
        .list()
        .iter()
        .flat_map(|service| {
            let found = endpoints.get(service.metadata.namespace.as_deref(), service.metadata.name.as_deref().unwrap_or_default());
            service_ports(service, found.as_deref())
        })
        .collect();
    ports.sort();
    ports
}

/// The proxy of one node.
pub struct ServiceProxy {
    config: Config,
    programmed: watch::Sender<Arc<Vec<ServicePort>>>,
}

impl ServiceProxy {
    pub fn new(config: Config) -> Self {
        Self { config, programmed: watch::channel(Arc::new(Vec::new())).0 }
    }

    /// The Service ports as last programmed: updated after each successful sync.
    pub fn programmed(&self) -> watch::Receiver<Arc<Vec<ServicePort>>> {
        self.programmed.subscribe()
    }

    /// Watches Services and Endpoints and keeps the rules in step, until the
    /// future is dropped. A failed sync is logged and tried again.
    pub async fn run(&self, client: kube::Client) {
        let services = Informer::<Service>::new();
        let endpoints = Informer::<Endpoints>::new();
        let changed = Arc::new(Notify::new());
        // Handlers only wake the sync loop, which reads both caches.
        let wake = changed.clone();
        services.on_change(move |_| wake.notify_one());
        let wake = changed.clone();
        endpoints.on_change(move |_| wake.notify_one());
        let _watches = AbortOnDrop(vec![
            services.start(Api::all(client.clone()), watcher::Config::default()),
            endpoints.start(Api::all(client), watcher::Config::default()),
        ]);
        services.wait_synced().await;
        endpoints.wait_synced().await;
        tracing::info!(table = %self.config.table, "service proxy synced with the API; programming rules");

        let mut rules = Rules::new(&self.config);
        loop {
            let ports = desired(&services, &endpoints);
            let wait = match rules.program(&ports).await {
                Ok(()) => {
                    tracing::debug!(ports = ports.len(), "service rules programmed");
                    self.programmed.send_replace(Arc::new(ports));
                    self.config.resync_period
                }
                Err(error) => {
                    tracing::error!(%error, "programming service rules failed; trying again");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                () = changed.notified() => tokio::time::sleep(self.config.burst_window).await,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}
