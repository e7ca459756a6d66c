//! The cluster DNS against a real API server (in-memory store, loopback): the
//! records of Services and Endpoints created through the API, as a pod's
//! resolver would ask for them over UDP and TCP.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(20);

struct Cluster {
    client: Client,
    dns: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

async fn start() -> Cluster {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let api = tokio::spawn(async move {
        apiserver::serve(store::mem::MemStore::new(), listener, apiserver::Config::default()).await.expect("API server");
    });
    let client = client::connect::from_url(&url).expect("client");
    let sockets = dns::Sockets::bind("127.0.0.1:0".parse().unwrap()).await.expect("bind DNS");
    let address = sockets.local_addr().expect("DNS address");
    let dns_client = client.clone();
    let dns = tokio::spawn(async move {
        dns::run(dns_client, dns::Config::default(), sockets).await.expect("DNS server");
    });
    Cluster { client, dns: address, tasks: vec![api, dns] }
}

impl Cluster {
    async fn create(&self, service: serde_json::Value, endpoints: Option<serde_json::Value>) {
        let namespace = service["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
        let services: Api<Service> = Api::namespaced(self.client.clone(), &namespace);
        services.create(&PostParams::default(), &serde_json::from_value(service).unwrap()).await.expect("create service");
        if let Some(endpoints) = endpoints {
            let api: Api<Endpoints> = Api::namespaced(self.client.clone(), &namespace);
            api.create(&PostParams::default(), &serde_json::from_value(endpoints).unwrap()).await.expect("create endpoints");
        }
    }

    async fn udp(&self, name: &str, kind: RecordType) -> Message {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(&query(name, kind).to_vec().unwrap(), self.dns).await.unwrap();
        let mut buffer = vec![0u8; 4096];
        let length = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buffer)).await.expect("a DNS answer").unwrap();
        Message::from_vec(&buffer[..length]).expect("a DNS message")
    }

    /// Asks until the answer satisfies `check` (the caches follow the API).
    async fn udp_until(&self, name: &str, kind: RecordType, check: impl Fn(&Message) -> bool) -> Message {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let answer = self.udp(name, kind).await;
            if check(&answer) {
                return answer;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {name} {kind}; last answer: {answer:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn query(name: &str, kind: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
    message
}

fn addresses(message: &Message) -> Vec<Ipv4Addr> {
    a_records(&message.answers)
}

fn a_records(records: &[hickory_proto::rr::Record]) -> Vec<Ipv4Addr> {
    let mut ips: Vec<Ipv4Addr> = records.iter().filter_map(|r| if let RData::A(a) = &r.data { Some(a.0) } else { None }).collect();
    ips.sort();
    ips
}

/// (port, target) of each SRV answer, sorted.
fn services(message: &Message) -> Vec<(u16, String)> {
    let mut srv: Vec<(u16, String)> = message
        .answers
        .iter()
        .filter_map(|r| if let RData::SRV(s) = &r.data { Some((s.port, s.target.to_ascii())) } else { None })
        .collect();
    srv.sort();
    srv
}

fn web_service() -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "web", "namespace": "default" },
        "spec": { "clusterIP": "10.96.0.50", "ports": [{ "name": "http", "port": 80, "targetPort": 8080 }, { "name": "dns", "port": 53, "protocol": "UDP" }] }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_name_resolves_to_its_cluster_ip_and_named_ports() {
    let cluster = start().await;
    cluster.create(web_service(), None).await;

    let answer = cluster.udp_until("web.default.svc.cluster.local.", RecordType::A, |m| m.metadata.response_code == ResponseCode::NoError).await;
    assert!(answer.metadata.authoritative);
    assert_eq!(addresses(&answer), vec![Ipv4Addr::new(10, 96, 0, 50)]);
    assert_eq!(answer.answers[0].ttl, 30);

    let srv = cluster.udp("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(services(&srv), vec![(80, "web.default.svc.cluster.local.".to_string())]);
    assert_eq!(a_records(&srv.additionals), vec![Ipv4Addr::new(10, 96, 0, 50)]);
    let udp_port = cluster.udp("_dns._udp.web.default.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(services(&udp_port), vec![(53, "web.default.svc.cluster.local.".to_string())]);

    // A port under the wrong protocol does not exist; a name without IPv6 has no AAAA.
    let wrong = cluster.udp("_http._udp.web.default.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(wrong.metadata.response_code, ResponseCode::NXDomain);
    let aaaa = cluster.udp("web.default.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(aaaa.metadata.response_code, ResponseCode::NoError);
    assert!(aaaa.answers.is_empty());
    assert_eq!(aaaa.authorities[0].record_type(), RecordType::SOA);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_headless_service_resolves_to_its_ready_endpoints_and_each_by_name() {
    let cluster = start().await;
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "db", "namespace": "data" },
        "spec": { "clusterIP": "None", "ports": [{ "name": "pg", "port": 5432 }] }
    });
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": { "name": "db", "namespace": "data" },
        "subsets": [{
            "addresses": [{ "ip": "10.244.1.5", "hostname": "db-0" }, { "ip": "10.244.2.6" }],
            "notReadyAddresses": [{ "ip": "10.244.3.7", "hostname": "db-2" }],
            "ports": [{ "name": "pg", "port": 5432, "protocol": "TCP" }]
        }]
    });
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(cluster.client.clone());
    namespaces.create(&PostParams::default(), &serde_json::from_value(json!({ "metadata": { "name": "data" } })).unwrap()).await.unwrap();
    cluster.create(service, Some(endpoints)).await;

    let answer = cluster.udp_until("db.data.svc.cluster.local.", RecordType::A, |m| !m.answers.is_empty()).await;
    assert_eq!(addresses(&answer), vec![Ipv4Addr::new(10, 244, 1, 5), Ipv4Addr::new(10, 244, 2, 6)], "ready endpoints only");

    let pod = cluster.udp("db-0.db.data.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&pod), vec![Ipv4Addr::new(10, 244, 1, 5)]);
    let unnamed = cluster.udp("10-244-2-6.db.data.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&unnamed), vec![Ipv4Addr::new(10, 244, 2, 6)]);
    let not_ready = cluster.udp("db-2.db.data.svc.cluster.local.", RecordType::A).await;
    assert_eq!(not_ready.metadata.response_code, ResponseCode::NXDomain);

    let srv = cluster.udp("_pg._tcp.db.data.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(
        services(&srv),
        vec![(5432, "10-244-2-6.db.data.svc.cluster.local.".to_string()), (5432, "db-0.db.data.svc.cluster.local.".to_string())]
    );
    assert_eq!(srv.additionals.len(), 2, "the A records of both targets");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_are_nxdomain_and_names_outside_the_domain_are_refused() {
    let cluster = start().await;
    cluster.create(web_service(), None).await;
    cluster.udp_until("web.default.svc.cluster.local.", RecordType::A, |m| !m.answers.is_empty()).await;

    let missing = cluster.udp("nothing.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert!(missing.metadata.authoritative);
    assert_eq!(missing.authorities.len(), 1);
    let RData::SOA(soa) = &missing.authorities[0].data else { panic!("an SOA in the authority section: {missing:?}") };
    assert_eq!(soa.mname.to_ascii(), "ns.dns.cluster.local.");

    // A namespace with Services exists as a name; one without does not.
    let namespace = cluster.udp("default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(namespace.metadata.response_code, ResponseCode::NoError);
    let empty = cluster.udp("empty.svc.cluster.local.", RecordType::A).await;
    assert_eq!(empty.metadata.response_code, ResponseCode::NXDomain);

    let outside = cluster.udp("example.com.", RecordType::A).await;
    assert_eq!(outside.metadata.response_code, ResponseCode::Refused);
    assert!(!outside.metadata.recursion_available);

    let pod = cluster.udp("10-244-0-9.default.pod.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&pod), vec![Ipv4Addr::new(10, 244, 0, 9)]);

    let version = cluster.udp("dns-version.cluster.local.", RecordType::TXT).await;
    assert_eq!(version.answers.len(), 1);

    // Deleting the Service takes its name away.
    let api: Api<Service> = Api::namespaced(cluster.client.clone(), "default");
    api.delete("web", &DeleteParams::default()).await.unwrap();
    cluster.udp_until("web.default.svc.cluster.local.", RecordType::A, |m| m.metadata.response_code == ResponseCode::NXDomain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_name_service_is_a_cname() {
    let cluster = start().await;
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "search", "namespace": "default" },
        "spec": { "type": "ExternalName", "externalName": "search.example.com" }
    });
    cluster.create(service, None).await;
    let answer = cluster.udp_until("search.default.svc.cluster.local.", RecordType::A, |m| !m.answers.is_empty()).await;
    let RData::CNAME(target) = &answer.answers[0].data else { panic!("a CNAME: {answer:?}") };
    assert_eq!(target.0.to_ascii(), "search.example.com.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_over_tcp_get_the_same_answers_on_one_connection() {
    let cluster = start().await;
    cluster.create(web_service(), None).await;
    cluster.udp_until("web.default.svc.cluster.local.", RecordType::A, |m| !m.answers.is_empty()).await;

    let mut stream = TcpStream::connect(cluster.dns).await.expect("connect over TCP");
    for (name, kind) in [("web.default.svc.cluster.local.", RecordType::A), ("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV)] {
        let request = query(name, kind).to_vec().unwrap();
        stream.write_all(&(request.len() as u16).to_be_bytes()).await.unwrap();
        stream.write_all(&request).await.unwrap();
        let length = stream.read_u16().await.expect("a length-prefixed answer");
        let mut body = vec![0u8; usize::from(length)];
        stream.read_exact(&mut body).await.unwrap();
        let answer = Message::from_vec(&body).unwrap();
        assert_eq!(answer.answers.len(), 1, "{name}: {answer:?}");
        assert_eq!(answer.answers[0].record_type(), kind);
    }
}
