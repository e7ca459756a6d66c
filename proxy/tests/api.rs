//! The proxy driven by a real API server (the in-memory store on a loopback
//! port): Services and Endpoints created and changed through the API become
//! rules in a node made of namespaces (needs root).

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use proxy::{ServicePort, ServiceProxy};
use support::{names_answering, Pod, ServiceNode, CLUSTER_IP, NODE_ADDRESS, NODE_PORT, POD_PORT, SERVICE_PORT};
use tokio::sync::watch;

/// Aborts the API server's and the proxy's tasks when the test ends.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        self.0.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

async fn start_api(tasks: &mut Tasks) -> kube::Client {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let store = store::mem::MemStore::new();
    tasks.0.push(tokio::spawn(async move {
        if let Err(error) = apiserver::serve(store, listener, apiserver::Config::default()).await {
            panic!("API server failed: {error}");
        }
    }));
    client::connect::from_url(&url).expect("client")
}

fn service() -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": "web", "namespace": "default" },
        "spec": {
            "type": "NodePort",
            "clusterIP": CLUSTER_IP.to_string(),
            "ports": [{ "name": "http", "port": SERVICE_PORT, "targetPort": "web", "nodePort": NODE_PORT }],
        },
    }))
    .expect("a Service")
}

/// Endpoints as the Endpoints controller writes them: the pods' addresses with
/// the named target port resolved to its number.
fn endpoints(ready: &[&Pod], not_ready: &[&Pod]) -> Endpoints {
    let addresses = |pods: &[&Pod]| pods.iter().map(|pod| serde_json::json!({ "ip": pod.ip.to_string() })).collect::<Vec<_>>();
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": "web", "namespace": "default" },
        "subsets": [{
            "addresses": addresses(ready),
            "notReadyAddresses": addresses(not_ready),
            "ports": [{ "name": "http", "port": POD_PORT, "protocol": "TCP" }],
        }],
    }))
    .expect("Endpoints")
}

/// Waits until the proxy has programmed a state that `done` accepts.
async fn programmed(rx: &mut watch::Receiver<Arc<Vec<ServicePort>>>, done: impl Fn(&[ServicePort]) -> bool) {
    tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|ports| done(ports)))
        .await
        .expect("the proxy programs the change within 20 s")
        .expect("the proxy is running");
}

fn endpoint_count(ports: &[ServicePort]) -> Option<usize> {
    ports.iter().find(|port| port.service == "web").map(|port| port.endpoints.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_and_endpoints_from_the_api_become_rules() {
    let node = ServiceNode::start("10.244.21.0/24").await;
    let mut tasks = Tasks(Vec::new());
    let client = start_api(&mut tasks).await;
    let proxy = Arc::new(ServiceProxy::new(node.proxy_config()));
    let mut rx = proxy.programmed();
    let running = proxy.clone();
    let proxy_client = client.clone();
    tasks.0.push(tokio::spawn(async move { running.run(proxy_client).await }));

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let endpoints_api: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    services.create(&PostParams::default(), &service()).await.expect("create the Service");
    endpoints_api.create(&PostParams::default(), &endpoints(&[&node.a, &node.b], &[])).await.expect("create Endpoints");
    programmed(&mut rx, |ports| endpoint_count(ports) == Some(2)).await;

    let cluster = SocketAddr::from((CLUSTER_IP, SERVICE_PORT));
    let answers: HashSet<String> = names_answering(&node.client.netns, cluster, 40).into_iter().collect();
    assert_eq!(answers, HashSet::from(["a".to_owned(), "b".to_owned()]), "both ready pods answer");
    let node_port = SocketAddr::from((NODE_ADDRESS, NODE_PORT));
    let answers: HashSet<String> = names_answering(&node.outside, node_port, 30).into_iter().collect();
    assert_eq!(answers.len(), 2, "the node port reaches both");

    // b stops being ready: the Endpoints controller moves it to notReadyAddresses.
    let mut changed = endpoints(&[&node.a], &[&node.b]);
    changed.metadata.resource_version = endpoints_api.get("web").await.expect("get").metadata.resource_version;
    endpoints_api.replace("web", &PostParams::default(), &changed).await.expect("replace Endpoints");
    programmed(&mut rx, |ports| endpoint_count(ports) == Some(1)).await;
    let answers: HashSet<String> = names_answering(&node.client.netns, cluster, 20).into_iter().collect();
    assert_eq!(answers, HashSet::from(["a".to_owned()]), "only the ready pod answers");

    services.delete("web", &DeleteParams::default()).await.expect("delete the Service");
    programmed(&mut rx, |ports| endpoint_count(ports).is_none()).await;
    let table = node.table();
    assert!(!table.contains("default/web"), "the Service's rules went with it:\n{table}");
}
