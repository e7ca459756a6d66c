//! Cluster DNS: answers `<service>.<namespace>.svc.<zone>` (A, SRV), headless
//! Services' endpoints and per-endpoint names, ExternalName CNAMEs and pod
//! names from list-and-watch caches of Services and Endpoints, as Kubernetes'
//! DNS specification (schema 1.1.0) and CoreDNS's `kubernetes` plugin do.
//!
//! It is authoritative for the cluster domain only and does not recurse: names
//! outside the domain get REFUSED (a node network of namespaces has no upstream
//! resolver to forward to).

pub mod names;
pub mod records;
pub mod server;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use client::informer::Informer;
use client::AbortOnDrop;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::runtime::watcher;
use kube::{Api, Client};

pub use server::Sockets;

/// The default cluster domain (the kubelet's `--cluster-domain`).
pub const DEFAULT_DOMAIN: &str = "cluster.local";
/// Seconds answers may be cached: the `ttl 30` of the Corefile Kubernetes
/// deploys (the CoreDNS plugin's own default is 5).
pub const DEFAULT_TTL: u32 = 30;

#[derive(Clone, Debug)]
pub struct Config {
    pub domain: String,
    pub ttl: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self { domain: DEFAULT_DOMAIN.into(), ttl: DEFAULT_TTL }
    }
}

/// The caches a DNS answer is read from, and the zone's settings.
pub struct Resolver {
    pub zone: records::Zone,
    services: Informer<Service>,
    endpoints: Informer<Endpoints>,
}

impl records::Objects for Resolver {
    fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        self.services.get(Some(namespace), name)
    }

    fn endpoints(&self, namespace: &str, name: &str) -> Option<Arc<Endpoints>> {
        self.endpoints.get(Some(namespace), name)
    }

    fn namespace_has_services(&self, namespace: &str) -> bool {
        !self.services.list_namespace(namespace).is_empty()
    }
}

/// Watches Services and Endpoints through `client`, then answers on `sockets`
/// until the future is dropped (which also stops the watches).
pub async fn run(client: Client, config: Config, sockets: Sockets) -> std::io::Result<()> {
    let services = Informer::new();
    let endpoints = Informer::new();
    let _watches = AbortOnDrop(vec![
        services.start(Api::<Service>::all(client.clone()), watcher::Config::default()),
        endpoints.start(Api::<Endpoints>::all(client), watcher::Config::default()),
    ]);
    // Answering before the caches hold the cluster would deny names that exist.
    services.wait_synced().await;
    endpoints.wait_synced().await;
    let serial = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
    let domain = config.domain.trim_end_matches('.').to_ascii_lowercase();
    let zone = records::Zone { domain, ttl: config.ttl, serial };
    tracing::info!(address = ?sockets.local_addr(), zone = %zone.domain, "cluster DNS serving");
    server::serve(sockets, Arc::new(Resolver { zone, services, endpoints })).await
}
