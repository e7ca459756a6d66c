//! The Services every cluster has, kept by the API server as Kubernetes' own
//! does: `kubernetes` in `default` at the first address of the service range,
//! pointing at the API server, and (when the server runs the cluster DNS)
//! `kube-dns` in `kube-system` at the tenth address. Their Endpoints are the
//! advertise addresses of every live API server; without one the Services
//! exist without endpoints.
//!
//! Several servers share the Endpoints as Kubernetes' lease endpoint
//! reconciler has them share: each server renews a Lease of its own in
//! `kube-system` (`apiserver-endpoint-<address>`, labelled
//! [`ENDPOINT_LEASE_LABEL`]), and every server writes the addresses of the
//! unexpired Leases, sorted, so they all agree; a server that dies leaves
//! the Endpoints once its Lease expires.
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
/// How long a server's endpoint Lease lasts without renewal.
const LEASE_SECONDS: i64 = 30;
/// The label of the servers' endpoint Leases.
pub const ENDPOINT_LEASE_LABEL: &str = "r8s.io/apiserver-endpoint";
/// On an endpoint Lease: whether that server answers DNS.
const DNS_ANNOTATION: &str = "r8s.io/serves-dns";

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

/// One live server, as its endpoint Lease tells.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerEndpoint {
    pub ip: String,
    pub serves_dns: bool,
}

/// The objects to keep: each Service, with its Endpoints (the live servers'
/// addresses) when this server has an advertise address.
fn wanted(config: &SystemServices, ranges: &ServiceRanges, api_port: u16, live: &[ServerEndpoint]) -> Vec<(Value, Option<Value>)> {
    let endpoints = |namespace: &str, name: &str, ports: Value, addresses: Vec<&ServerEndpoint>| {
        config.advertise_address.map(|_| {
            let addresses: Vec<Value> = addresses.iter().map(|server| json!({ "ip": server.ip })).collect();
            let subsets = if addresses.is_empty() { json!([]) } else { json!([{ "addresses": addresses, "ports": ports }]) };
            json!({
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": { "name": name, "namespace": namespace },
                "subsets": subsets
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
        endpoints("default", "kubernetes", json!([{ "name": "https", "port": api_port, "protocol": "TCP" }]), live.iter().collect()),
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
                live.iter().filter(|server| server.serves_dns).collect(),
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
    loop {
        let live = match config.advertise_address {
            Some(address) => match renew_and_list(&http, &base, address, config.dns_port.is_some()).await {
                Ok(live) => live,
                Err(error) => {
                    tracing::warn!(%error, "cannot renew this server's endpoint Lease");
                    tokio::time::sleep(INTERVAL).await;
                    continue;
                }
            },
            None => Vec::new(),
        };
        for (service, endpoints) in wanted(&config, &ranges, api.port(), &live) {
            let namespace = service["metadata"]["namespace"].as_str().unwrap_or_default();
            if let Err(error) = ensure(&http, &format!("{base}/{namespace}/services"), &service, false).await {
                tracing::warn!(%error, service = %service["metadata"]["name"], "cannot create a system Service");
            }
            if let Some(endpoints) = endpoints {
                if let Err(error) = ensure(&http, &format!("{base}/{namespace}/endpoints"), &endpoints, true).await {
                    tracing::warn!(%error, endpoints = %endpoints["metadata"]["name"], "cannot keep a system Service's Endpoints");
                }
            }
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Renews this server's endpoint Lease and returns the servers whose Leases
/// have not expired, sorted.
async fn renew_and_list(http: &reqwest::Client, base: &str, address: IpAddr, serves_dns: bool) -> Result<Vec<ServerEndpoint>, String> {
    let leases = format!("{base}/kube-system/leases").replace("/api/v1/", "/apis/coordination.k8s.io/v1/");
    let name = format!("apiserver-endpoint-{}", address.to_string().replace(['.', ':'], "-"));
    let now = time_now();
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {
            "name": name, "namespace": "kube-system",
            "labels": { ENDPOINT_LEASE_LABEL: "true" },
            "annotations": { DNS_ANNOTATION: serves_dns.to_string() }
        },
        "spec": { "holderIdentity": address.to_string(), "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now }
    });
    let url = format!("{leases}/{name}");
    let current = http.get(&url).send().await.map_err(|e| e.to_string())?;
    if current.status() == reqwest::StatusCode::NOT_FOUND {
        send(http.post(&leases), &lease).await?;
    } else {
        let mut current = json_body(current).await?;
        current["spec"] = lease["spec"].clone();
        current["metadata"]["annotations"] = lease["metadata"]["annotations"].clone();
        send(http.put(&url), &current).await?;
    }
    let list = json_body(http.get(format!("{leases}?labelSelector={ENDPOINT_LEASE_LABEL}")).send().await.map_err(|e| e.to_string())?).await?;
    Ok(live_servers(list["items"].as_array().map(Vec::as_slice).unwrap_or_default(), chrono::Utc::now().timestamp()))
}

/// The servers whose endpoint Leases have not expired at `now` (seconds
/// since the epoch), sorted by address (pure).
pub fn live_servers(leases: &[Value], now: i64) -> Vec<ServerEndpoint> {
    let mut live: Vec<ServerEndpoint> = leases
        .iter()
        .filter(|lease| {
            let renewed = lease["spec"]["renewTime"].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).map(|t| t.timestamp());
            let duration = lease["spec"]["leaseDurationSeconds"].as_i64().unwrap_or(0);
            renewed.is_some_and(|renewed| renewed + duration > now)
        })
        .filter_map(|lease| {
            let ip = lease["spec"]["holderIdentity"].as_str()?.to_string();
            let serves_dns = lease["metadata"]["annotations"][DNS_ANNOTATION].as_str() == Some("true");
            Some(ServerEndpoint { ip, serves_dns })
        })
        .collect();
    live.sort();
    live.dedup();
    live
}

async fn json_body(response: reqwest::Response) -> Result<Value, String> {
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// Now as a `MicroTime`, what a Lease's `renewTime` holds.
fn time_now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
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
    let mut current = json_body(current).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(ip: &str, renewed: &str, dns: bool) -> Value {
        json!({"metadata": {"annotations": {DNS_ANNOTATION: dns.to_string()}}, "spec": {"holderIdentity": ip, "renewTime": renewed, "leaseDurationSeconds": 30}})
    }

    #[test]
    fn only_servers_with_unexpired_leases_are_endpoints_in_address_order() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-08T00:01:00Z").unwrap().timestamp();
        let leases = [
            lease("172.30.0.2", "2026-12-08T00:00:45.000000Z", true),
            lease("172.30.0.1", "2026-12-08T00:00:59.500000Z", false),
            lease("172.30.0.3", "2026-12-08T00:00:29.000000Z", true),
        ];
        let live = live_servers(&leases, now);
        assert_eq!(live, vec![ServerEndpoint { ip: "172.30.0.1".into(), serves_dns: false }, ServerEndpoint { ip: "172.30.0.2".into(), serves_dns: true }]);
    }
}
