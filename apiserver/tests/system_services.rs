//! The Services the API server keeps: `kubernetes` and `kube-dns`, at the
//! addresses clients expect, with Endpoints at the advertise address.

use std::time::Duration;

use serde_json::{json, Value};

use apiserver::system_services::SystemServices;

struct Server {
    base: String,
    http: reqwest::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(system_services: SystemServices) -> (Server, u16) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().unwrap().port();
    let config = apiserver::Config { system_services: Some(system_services), ..Default::default() };
    let task = tokio::spawn(async move {
        let _ = apiserver::serve(store::mem::MemStore::new(), listener, config).await;
    });
    (Server { base: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new(), task }, port)
}

impl Server {
    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(format!("{}{path}", self.base)).send().await.expect("GET");
        let code = response.status().as_u16();
        (code, response.json().await.unwrap_or(Value::Null))
    }

    /// The object at `path`, once the server has made it.
    async fn eventually(&self, path: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (code, body) = self.get(path).await;
            if code == 200 {
                return body;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {path}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_and_kube_dns_services_point_at_the_advertise_address() {
    let (server, api_port) = start(SystemServices { advertise_address: Some("172.30.0.1".parse().unwrap()), dns_port: Some(5353) }).await;

    let kubernetes = server.eventually("/api/v1/namespaces/default/services/kubernetes").await;
    assert_eq!(kubernetes["spec"]["clusterIP"], "10.96.0.1");
    assert_eq!(kubernetes["spec"]["ports"], json!([{ "name": "https", "port": 443, "protocol": "TCP", "targetPort": api_port }]));
    let endpoints = server.eventually("/api/v1/namespaces/default/endpoints/kubernetes").await;
    assert_eq!(
        endpoints["subsets"],
        json!([{ "addresses": [{ "ip": "172.30.0.1" }], "ports": [{ "name": "https", "port": api_port, "protocol": "TCP" }] }])
    );

    let dns = server.eventually("/api/v1/namespaces/kube-system/services/kube-dns").await;
    assert_eq!(dns["spec"]["clusterIP"], "10.96.0.10");
    assert_eq!(dns["metadata"]["labels"]["k8s-app"], "kube-dns");
    let ports: Vec<(Value, Value, Value)> = dns["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].clone(), p["protocol"].clone(), p["targetPort"].clone()))
        .collect();
    assert_eq!(ports, vec![(json!("dns"), json!("UDP"), json!(5353)), (json!("dns-tcp"), json!("TCP"), json!(5353))]);
    let dns_endpoints = server.eventually("/api/v1/namespaces/kube-system/endpoints/kube-dns").await;
    assert_eq!(dns_endpoints["subsets"][0]["addresses"], json!([{ "ip": "172.30.0.1" }]));
    assert_eq!(dns_endpoints["subsets"][0]["ports"][1], json!({ "name": "dns-tcp", "port": 5353, "protocol": "TCP" }));

    // The DNS address is taken: a user's Service cannot have it.
    let clash = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": { "name": "mine" },
        "spec": { "clusterIP": "10.96.0.10", "ports": [{ "port": 53 }] }
    });
    let response = server
        .http
        .post(format!("{}/api/v1/namespaces/default/services", server.base))
        .header("content-type", "application/json")
        .body(clash.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let status: Value = response.json().await.unwrap();
    assert!(status["message"].as_str().unwrap().contains("provided IP is already allocated"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_advertise_address_or_dns_there_are_no_endpoints_and_no_kube_dns() {
    let (server, _) = start(SystemServices::default()).await;
    server.eventually("/api/v1/namespaces/default/services/kubernetes").await;
    // The loop makes Endpoints right after the Service when it makes any.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.get("/api/v1/namespaces/default/endpoints/kubernetes").await.0, 404);
    assert_eq!(server.get("/api/v1/namespaces/kube-system/services/kube-dns").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_servers_share_the_endpoints_through_their_leases() {
    // Two servers of one cluster (one store), on the same port at two addresses, as `r8s up --servers` has them.
    let store = store::mem::MemStore::new();
    let first = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = first.local_addr().unwrap().port();
    let second = tokio::net::TcpListener::bind(("127.0.0.2", port)).await.expect("bind a second loopback address");
    let mut tasks = Vec::new();
    for (listener, address) in [(first, "127.0.0.1"), (second, "127.0.0.2")] {
        let config = apiserver::Config {
            system_services: Some(SystemServices { advertise_address: Some(address.parse().unwrap()), dns_port: Some(5353) }),
            ..Default::default()
        };
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let _ = apiserver::serve(store, listener, config).await;
        }));
    }
    let server = Server { base: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new(), task: tasks.remove(0) };
    let _second = Server { base: String::new(), http: reqwest::Client::new(), task: tasks.remove(0) };

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, endpoints) = server.get("/api/v1/namespaces/default/endpoints/kubernetes").await;
        if endpoints["subsets"][0]["addresses"] == json!([{ "ip": "127.0.0.1" }, { "ip": "127.0.0.2" }]) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "both servers never became endpoints: {endpoints}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, leases) = server.get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases?labelSelector=r8s.io/apiserver-endpoint").await;
    assert_eq!(leases["items"].as_array().map(Vec::len), Some(2), "one Lease per server: {leases}");
    let (_, dns) = server.get("/api/v1/namespaces/kube-system/endpoints/kube-dns").await;
    assert_eq!(dns["subsets"][0]["addresses"].as_array().map(Vec::len), Some(2), "{dns}");
}
