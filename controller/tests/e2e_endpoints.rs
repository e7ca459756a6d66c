//! A Service's Endpoints follow the pods it selects, on hollow nodes.

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

use common::{available, deployment, eventually};

const WAIT: Duration = Duration::from_secs(60);

fn ready_ips(endpoints: &Endpoints) -> usize {
    endpoints.subsets.iter().flatten().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_lists_the_ready_pods_it_selects() {
    let cluster = common::start(2, Default::default()).await;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(cluster.client.clone(), "default");
    deployments.create(&PostParams::default(), &deployment("web", 3, "nginx:1")).await.expect("create");
    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "web", "namespace": "default" },
        "spec": { "selector": { "app": "web" }, "ports": [{ "name": "http", "port": 80, "targetPort": 8080 }] }
    }))
    .unwrap();
    services.create(&PostParams::default(), &service).await.expect("create service");
    eventually("3 replicas available", WAIT, || available(&deployments, "web", 3)).await;
    let listed = eventually("3 ready addresses", WAIT, || async {
        let e = endpoints.get("web").await.ok()?;
        (ready_ips(&e) == 3).then_some(e)
    })
    .await;
    let subset = &listed.subsets.unwrap()[0];
    assert_eq!(subset.ports.as_ref().unwrap()[0].port, 8080);
    assert!(subset.addresses.as_ref().unwrap().iter().all(|a| a.node_name.is_some() && a.target_ref.is_some()));

    deployments.patch("web", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 1 } }))).await.expect("scale");
    eventually("1 ready address", WAIT, || async { (ready_ips(&endpoints.get("web").await.ok()?) == 1).then_some(()) }).await;
}
