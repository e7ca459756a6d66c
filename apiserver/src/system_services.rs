//! The Services every cluster has, kept by the API server as Kubernetes' own
//! does: `kubernetes` in `default` at the first address of the service range,
//! pointing at the API server, and (when the server runs the cluster DNS)
//! `kube-dns` in `kube-system` at the tenth address. Their Endpoints are the
//! advertise address; without one the Services exist without endpoints.
//!
//! The loop goes through the server's own HTTP API, so the Services get the
//! same defaults, validation and address reservations as anyone's.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::{json, Value};

use crate::allocator::ServiceRanges;

/// How often the Services and Endpoints are checked (kube-apiserver's endpoint
/// reconciler interval), so a deleted one comes back.
const INTERVAL: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Default)]
pub struct SystemServices {
    /// The address other hosts reach this server at (`--advertise-address`).
    pub advertise_address: Option<IpAddr>,
    /// The port the cluster DNS answers on at the advertise address; `None`
    /// when this server runs no cluster DNS (then there is no `kube-dns`).
    pub dns_port: Option<u16>,
}

/// `kubernetes`' address: the first of the range, which dynamic allocation never gives.
pub fn kubernetes_ip(ranges: &ServiceRanges) -> Ipv4Addr {
    ranges.cluster_ips.address(1)
}

/// `kube-dns`' address: the tenth of the range, as kubeadm picks it.
pub fn dns_ip(ranges: &ServiceRanges) -> Ipv4Addr {
    ranges.cluster_ips.address(10)
}

/// The objects to keep: each Service, with its Endpoints when there is an advertise address.
fn wanted(config: &SystemServices, ranges: &ServiceRanges, api_port: u16) -> Vec<(Value, Option<Value>)> {
    let endpoints = |namespace: &str, name: &str, ports: Value| {
        config.advertise_address.map(|ip| {
            json!({
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": { "name": name, "namespace": namespace },
                "subsets": [{ "addresses": [{ "ip": ip.to_string() }], "ports": ports }]
            })
        })
    };
    let mut objects = vec![(
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": "kubernetes", "namespace": "default", "labels": { "component": "apiserver", "provider": "kubernetes" } },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": kubernetes_ip(ranges).to_string(),
                "ports": [{ "name": "https", "port": 443, "protocol": "TCP", "targetPort": api_port }],
                "sessionAffinity": "None"
            }
        }),
        endpoints("default", "kubernetes", json!([{ "name": "https", "port": api_port, "protocol": "TCP" }])),
    )];
    if let Some(dns_port) = config.dns_port {
        objects.push((
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {
                    "name": "kube-dns", "namespace": "kube-system",
                    "labels": { "k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "r8s-dns" }
                },
                "spec": {
                    "type": "ClusterIP",
                    "clusterIP": dns_ip(ranges).to_string(),
                    "ports": [
                        { "name": "dns", "port": 53, "protocol": "UDP", "targetPort": dns_port },
                        { "name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": dns_port }
                    ]
                }
            }),
            endpoints(
                "kube-system",
                "kube-dns",
                json!([{ "name": "dns", "port": dns_port, "protocol": "UDP" }, { "name": "dns-tcp", "port": dns_port, "protocol": "TCP" }]),
            ),
        ));
    }
    objects
}

/// Keeps the system Services (and their Endpoints) through the API at `api`
/// until the future is dropped.
pub async fn keep(api: SocketAddr, config: SystemServices, ranges: ServiceRanges) {
    let api = match api.ip() {
        ip if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), api.port()),
        _ => api,
    };
    let base = format!("http://{api}/api/v1/namespaces");
    let http = reqwest::Client::new();
    let objects = wanted(&config, &ranges, api.port());
    loop {
        for (service, endpoints) in &objects {
            let namespace = service["metadata"]["namespace"].as_str().unwrap_or_default();
            if let Err(error) = ensure(&http, &format!("{base}/{namespace}/services"), service, false).await {
                tracing::warn!(%error, service = %service["metadata"]["name"], "cannot create a system Service");
            }
            if let Some(endpoints) = endpoints {
                if let Err(error) = ensure(&http, &format!("{base}/{namespace}/endpoints"), endpoints, true).await {
                    tracing::warn!(%error, endpoints = %endpoints["metadata"]["name"], "cannot keep a system Service's Endpoints");
                }
            }
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Creates `object` in `collection` if it is missing; with `subsets`, also puts
/// back subsets that differ (someone edited them, or the address changed).
async fn ensure(http: &reqwest::Client, collection: &str, object: &Value, subsets: bool) -> Result<(), String> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let url = format!("{collection}/{name}");
    let current = http.get(&url).send().await.map_err(|e| e.to_string())?;
    if current.status() == reqwest::StatusCode::NOT_FOUND {
        return send(http.post(collection), object).await;
    }
    if !current.status().is_success() {
        return Err(format!("GET {url}: {}", current.status()));
    }
    let mut current: Value = serde_json::from_slice(&current.bytes().await.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    if subsets && current["subsets"] != object["subsets"] {
        current["subsets"] = object["subsets"].clone();
        return send(http.put(&url), &current).await;
    }
    Ok(())
}

async fn send(request: reqwest::RequestBuilder, object: &Value) -> Result<(), String> {
    let response = request.header("content-type", "application/json").body(object.to_string()).send().await.map_err(|e| e.to_string())?;
    match response.status() {
        // Another server of the cluster made it first.
        status if status.is_success() || status == reqwest::StatusCode::CONFLICT => Ok(()),
        status => Err(format!("{status}: {}", response.text().await.unwrap_or_default())),
    }
}
