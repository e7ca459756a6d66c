//! The raft store as separate `r8s server` processes on loopback: a server
//! killed with SIGKILL under load keeps every acknowledged write, SIGTERM stops
//! it cleanly, a three-server cluster survives losing its leader, which
//! later catches up (from a snapshot, as the others have purged the log it
//! missed), and a server without quorum is live but says it is not ready.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use store::raft::process::{LocalCluster, ServerProcess};
use store::raft::RaftClient;
use store::StoreError;
use tempfile::TempDir;

const LOAD_TIMEOUT: Duration = Duration::from_secs(120);

fn r8s() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_r8s"))
}

/// One server in its own temp dir (dropped after the server, which it outlives).
fn single_server() -> (ServerProcess, TempDir) {
    let root = tempfile::Builder::new()
        .prefix("r8s-store-server")
        .tempdir()
        .expect("temp dir");
    let server = ServerProcess::start(r8s(), 1, root.path(), None, &[]).expect("start r8s server");
    (server, root)
}

fn value(key: &str) -> Bytes {
    Bytes::from(format!("{key}=").repeat(30))
}

/// Concurrent writers of new keys, each stopping at its first failed write.
struct Load {
    acknowledged: Arc<Mutex<Vec<String>>>,
    writers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(client: Arc<RaftClient>, writers: usize) -> Load {
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let writers = (0..writers)
            .map(|writer| {
                let (client, acknowledged) = (client.clone(), acknowledged.clone());
                tokio::spawn(async move {
                    for i in 0.. {
                        let key = format!("/load/{writer}/{i}");
                        if client.create(&key, value(&key)).await.is_err() {
                            return;
                        }
                        acknowledged.lock().unwrap().push(key);
                    }
                })
            })
            .collect();
        Load {
            acknowledged,
            writers,
        }
    }

    async fn wait_for(&self, count: usize) {
        let deadline = tokio::time::Instant::now() + LOAD_TIMEOUT;
        while self.acknowledged.lock().unwrap().len() < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the write load made no progress"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for every writer to stop; returns the acknowledged keys.
    async fn finish(self) -> Vec<String> {
        for writer in self.writers {
            writer.await.expect("writer task");
        }
        let keys = self.acknowledged.lock().unwrap().clone();
        keys
    }
}

/// Creates a key as a client must while the leader changes: `Unavailable` means
/// the outcome is unknown (the leader may have died after committing), so retry,
/// and take `AlreadyExists` with our value as the earlier attempt having won.
async fn create_retrying(client: &RaftClient, key: &str) {
    for _ in 0..10 {
        match client.create(key, value(key)).await {
            Ok(_) => return,
            Err(StoreError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(StoreError::AlreadyExists { .. }) => {
                let kv = client
                    .get(key, None)
                    .await
                    .expect("get")
                    .expect("it exists");
                assert_eq!(kv.value, value(key), "{key} exists with another value");
                return;
            }
            Err(e) => panic!("write of {key} after the failover failed: {e}"),
        }
    }
    panic!("write of {key} stayed unavailable after the failover");
}

async fn assert_all_there(client: &RaftClient, keys: &[String]) {
    for key in keys {
        let kv = client
            .get(key, None)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("acknowledged {key} is lost"));
        assert_eq!(kv.value, value(key), "{key} has another value");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_write() {
    let (mut server, _root) = single_server();
    let load = Load::start(Arc::new(server.client()), 16);
    load.wait_for(2000).await;
    server.kill();
    let acknowledged = load.finish().await;

    server.restart().expect("restart");
    assert_all_there(&server.client(), &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly_and_the_data_stays() {
    let (mut server, _root) = single_server();
    let key = "/kept".to_string();
    server
        .client()
        .create(&key, value(&key))
        .await
        .expect("write");

    let status = server.terminate().expect("SIGTERM");
    assert!(
        status.success(),
        "r8s server exited with {status} on SIGTERM"
    );
    let log = std::fs::read_to_string(server.log_path()).expect("server log");
    assert!(log.contains("stopped"), "no clean stop in the log:\n{log}");

    server.restart().expect("restart");
    assert_all_there(&server.client(), &[key]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_survive_losing_the_leader_and_it_catches_up_from_a_snapshot() {
    let small_snapshots = ["--snapshot-every", "50", "--logs-to-keep", "10"];
    let mut cluster =
        LocalCluster::start(r8s(), 3, &small_snapshots).expect("start a 3-server cluster");

    let mut acknowledged = Vec::new();
    for i in 0..100 {
        let key = format!("/before/{i}");
        let client = cluster.servers()[1].client();
        client
            .create(&key, value(&key))
            .await
            .expect("write before the failover");
        acknowledged.push(key);
    }

    let leader = cluster
        .leader(0)
        .await
        .expect("ask for the leader")
        .expect("a leader is known");
    let old_leader_id = cluster.servers()[leader].node_id();
    cluster.servers_mut()[leader].kill();

    // The survivors elect a new leader and take writes through either of them;
    // enough of them that the log the old leader missed is purged.
    let survivor = (leader + 1) % 3;
    let client = cluster.servers()[survivor].client();
    for i in 0..300 {
        let key = format!("/after/{i}");
        create_retrying(&client, &key).await;
        acknowledged.push(key);
    }
    let new_leader = cluster
        .leader(survivor)
        .await
        .expect("ask for the leader")
        .expect("a new leader");
    assert_ne!(cluster.servers()[new_leader].node_id(), old_leader_id);

    cluster.servers_mut()[leader]
        .restart()
        .expect("restart the old leader");
    // A linearizable read on the old leader waits until it has caught up.
    assert_all_there(&cluster.servers()[leader].client(), &acknowledged).await;
    for server in cluster.servers() {
        assert_all_there(&server.client(), &acknowledged).await;
    }
    let log = std::fs::read_to_string(cluster.servers()[leader].log_path()).expect("server log");
    assert!(
        log.contains("installed a raft snapshot"),
        "the old leader caught up without a snapshot:\n{log}"
    );
}

/// GET `path` on a server's API: the status code and the body.
async fn probe(url: &str, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("{url}{path}")).await.expect("GET");
    let code = response.status().as_u16();
    (code, response.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_quorum_is_live_but_not_ready_until_quorum_is_back() {
    let mut cluster = LocalCluster::start(r8s(), 3, &[]).expect("start a 3-server cluster");
    let url = cluster.servers()[0].api_url().to_string();
    assert_eq!(probe(&url, "/readyz").await, (200, "ok".to_string()));
    let (code, verbose) = probe(&url, "/readyz?verbose").await;
    assert_eq!(code, 200);
    assert_eq!(verbose, "[+]ping ok\n[+]store ok\n[+]store-readiness ok\nreadyz check passed\n");

    cluster.servers_mut()[1].kill();
    cluster.servers_mut()[2].kill();
    let (code, text) = probe(&url, "/readyz").await;
    assert_eq!(code, 500, "ready without quorum: {text}");
    assert!(text.contains("[-]store-readiness failed: reason withheld"), "{text}");
    assert!(text.ends_with("readyz check failed\n"), "{text}");
    assert_eq!(probe(&url, "/healthz").await.0, 500, "/healthz follows /readyz");
    assert_eq!(probe(&url, "/readyz/store-readiness").await.0, 500);
    assert_eq!(probe(&url, "/livez").await, (200, "ok".to_string()), "the server itself still lives");
    assert_eq!(probe(&url, "/readyz?exclude=store-readiness").await.0, 200);

    cluster.servers_mut()[1].restart().expect("restart a peer");
    let deadline = tokio::time::Instant::now() + LOAD_TIMEOUT;
    while probe(&url, "/readyz").await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "not ready again with quorum back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
