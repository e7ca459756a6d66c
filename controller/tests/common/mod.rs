//! An in-process cluster for end-to-end tests: the real API server over the
//! in-memory store on a loopback port, the scheduler, the controllers and hollow
//! nodes, all talking HTTP. Everything stops when the cluster is dropped.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use node_agent::hollow::{HollowNodes, HollowSettings};
use controller::manager::Settings;
use kube::Client;
use tokio::task::JoinHandle;

pub struct Cluster {
    pub client: Client,
    /// The API server's address, for tools such as kubectl.
    pub url: String,
    pub nodes: HollowNodes,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

pub async fn start_api() -> (Client, String, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let store = store::mem::MemStore::new();
    let server = tokio::spawn(async move {
        if let Err(error) = apiserver::serve(store, listener, apiserver::Config::default()).await {
            panic!("API server failed: {error}");
        }
    });
    (client::connect::from_url(&url).expect("client"), url, server)
}

/// API server, scheduler, controllers and `nodes` hollow nodes.
pub async fn start(nodes: usize, settings: Settings) -> Cluster {
    let (client, url, server) = start_api().await;
    let scheduler_client = client.clone();
    let scheduler = tokio::spawn(async move {
        let _ = scheduler::run(scheduler_client, scheduler::Settings::default()).await;
    });
    let controllers = tokio::spawn(controller::manager::run(client.clone(), settings));
    let hollow = HollowSettings {
        ready_delay: Duration::from_millis(20),
        lease_renew_interval: Duration::from_millis(300),
        ..Default::default()
    };
    let nodes = HollowNodes::start(client.clone(), "hollow", nodes, hollow).await.expect("hollow nodes");
    Cluster { client, url, nodes, tasks: vec![server, scheduler, controllers] }
}

/// A Deployment of `replicas` pods labelled `app: <name>`.
pub fn deployment(name: &str, replicas: i32, image: &str) -> k8s_openapi::api::apps::v1::Deployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "main", "image": image }] }
            }
        }
    }))
    .expect("a valid Deployment")
}

/// Whether the Deployment has all its replicas updated and available.
pub async fn available(api: &kube::Api<k8s_openapi::api::apps::v1::Deployment>, name: &str, replicas: i32) -> Option<()> {
    let d = api.get(name).await.ok()?;
    let status = d.status?;
    let done = status.observed_generation >= d.metadata.generation
        && status.updated_replicas == Some(replicas)
        && status.available_replicas == Some(replicas);
    done.then_some(())
}

/// Polls `check` until it returns `Some`, failing the test after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
