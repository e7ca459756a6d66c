//! The agent's Service proxy end to end, as root: a web pod (busybox httpd),
//! a Service and its Endpoints created through the API, and a client pod that
//! fetches the page through the Service's cluster IP, which only the agent's
//! nftables rules make reachable. Build the binary first:
//! `cargo build -p r8s && cargo nextest run -p r8s-node-agent --test service_proxy`.

mod support;

use std::time::Duration;

use client::k8s_openapi::api::core::v1::{Endpoints, Service};
use serde_json::json;
use support::{phase, TestNode, IMAGE};

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn pods_reach_a_pod_through_its_service_cluster_ip() {
    let node = TestNode::new();
    node.run(|cluster| async move {
        let serve = "mkdir -p /www && echo hello from web > /www/index.html && exec httpd -f -p 8080 -h /www";
        cluster.create_pod("web", json!({"containers": [{"name": "main", "image": IMAGE, "command": ["sh", "-c", serve]}]})).await;
        let web = cluster.wait_pod("web", MINUTE, "Running", |pod| phase(pod) == "Running").await;
        let ip = web.status.and_then(|status| status.pod_ip).expect("a pod IP");
        let _: Service = cluster
            .create(json!({"metadata": {"name": "web"}, "spec": {"clusterIP": "10.96.0.40", "ports": [{"port": 80, "targetPort": 8080}]}}))
            .await;
        let _: Endpoints =
            cluster.create(json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": ip}], "ports": [{"port": 8080}]}]})).await;

        // Until the proxy has synced the cluster IP answers nothing; then the page.
        // busybox nc, not wget: the static busybox's wget crashes in this image.
        let fetch = "until printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc 10.96.0.40 80; do sleep 0.2; done; exec sleep 3600";
        cluster.create_pod("client", json!({"containers": [{"name": "main", "image": IMAGE, "command": ["sh", "-c", fetch]}]})).await;
        let mut logs = String::new();
        for _ in 0..600 {
            logs = cluster.agent_get("/containerLogs/default/client/main").await.1;
            if logs.contains("hello from web") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the client never got the page through the Service; its log: {logs:?}");
    });
}
