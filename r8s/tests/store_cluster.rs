//! The raft store as separate `r8s server` processes on loopback: a server
//! killed with SIGKILL under load keeps every acknowledged write, and a
//! three-server cluster survives losing its leader, which later catches up
//! (from a snapshot, as the others have purged the log it missed).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use store::raft::RaftClient;
use store::StoreError;
use tempfile::TempDir;

const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// One `r8s server` process, killed by PID when dropped.
struct Server {
    node_id: u64,
    addr: String,
    data_dir: PathBuf,
    extra: Vec<String>,
    child: Child,
}

impl Server {
    fn start(node_id: u64, root: &Path, join: Option<&str>, extra: &[&str]) -> Server {
        let addr = format!("127.0.0.1:{}", free_port());
        let data_dir = root.join(format!("server-{node_id}"));
        let mut extra: Vec<String> = extra.iter().map(|arg| arg.to_string()).collect();
        if let Some(seed) = join {
            extra.extend(["--join".to_string(), seed.to_string()]);
        }
        let child = spawn(node_id, &addr, &data_dir, &extra);
        let mut server = Server {
            node_id,
            addr,
            data_dir,
            extra,
            child,
        };
        server.wait_ready();
        server
    }

    fn client(&self) -> RaftClient {
        RaftClient::new(&self.addr)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to exit.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        self.child.wait().expect("wait for the server")
    }

    /// Starts it again with the same id, address and data.
    fn restart(&mut self) {
        self.kill();
        self.child = spawn(self.node_id, &self.addr, &self.data_dir, &self.extra);
        self.wait_ready();
    }

    /// Waits for the `ready` line the server prints once its store is up.
    fn wait_ready(&mut self) {
        let stdout = self.child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("ready") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(READY_TIMEOUT).is_err() {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            panic!(
                "server {} did not become ready; its log:\n{log}",
                self.node_id
            );
        }
    }

    fn log_path(&self) -> PathBuf {
        log_path(&self.data_dir)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn log_path(data_dir: &Path) -> PathBuf {
    data_dir.with_extension("log")
}

fn spawn(node_id: u64, addr: &str, data_dir: &Path, extra: &[String]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(data_dir))
        .expect("server log");
    Command::new(env!("CARGO_BIN_EXE_r8s"))
        .args([
            "server",
            "--node-id",
            &node_id.to_string(),
            "--raft-addr",
            addr,
            "--data-dir",
        ])
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start r8s server")
}

/// A port that was free a moment ago (the server binds it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn temp_root() -> TempDir {
    tempfile::Builder::new()
        .prefix("r8s-store-cluster")
        .tempdir()
        .expect("temp dir")
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
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
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
                let kv = client.get(key, None).await.expect("get").expect("it exists");
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
    let root = temp_root();
    let mut server = Server::start(1, root.path(), None, &[]);
    let load = Load::start(Arc::new(server.client()), 16);
    load.wait_for(2000).await;
    server.kill();
    let acknowledged = load.finish().await;

    server.restart();
    assert_all_there(&server.client(), &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly_and_the_data_stays() {
    let root = temp_root();
    let mut server = Server::start(1, root.path(), None, &[]);
    let key = "/kept".to_string();
    server
        .client()
        .create(&key, value(&key))
        .await
        .expect("write");

    let status = server.terminate();
    assert!(
        status.success(),
        "r8s server exited with {status} on SIGTERM"
    );
    let log = std::fs::read_to_string(server.log_path()).expect("server log");
    assert!(log.contains("stopped"), "no clean stop in the log:\n{log}");

    server.restart();
    assert_all_there(&server.client(), &[key]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_survive_losing_the_leader_and_it_catches_up_from_a_snapshot() {
    let root = temp_root();
    let small_snapshots = ["--snapshot-every", "50", "--logs-to-keep", "10"];
    let first = Server::start(1, root.path(), None, &small_snapshots);
    let seed = first.addr.clone();
    let mut servers = vec![
        first,
        Server::start(2, root.path(), Some(&seed), &small_snapshots),
        Server::start(3, root.path(), Some(&seed), &small_snapshots),
    ];

    let mut acknowledged = Vec::new();
    for i in 0..100 {
        let key = format!("/before/{i}");
        servers[1]
            .client()
            .create(&key, value(&key))
            .await
            .expect("write before the failover");
        acknowledged.push(key);
    }

    let leader_id = servers[0]
        .client()
        .leader()
        .await
        .expect("leader")
        .expect("a leader is known");
    let leader = servers
        .iter()
        .position(|server| server.node_id == leader_id)
        .expect("the leader is one of ours");
    servers[leader].kill();

    // The survivors elect a new leader and take writes through either of them;
    // enough of them that the log the old leader missed is purged.
    let survivor = servers
        .iter()
        .position(|server| server.node_id != leader_id)
        .expect("a survivor");
    let client = servers[survivor].client();
    for i in 0..300 {
        let key = format!("/after/{i}");
        create_retrying(&client, &key).await;
        acknowledged.push(key);
    }
    let new_leader = client
        .leader()
        .await
        .expect("leader")
        .expect("a new leader");
    assert_ne!(new_leader, leader_id);

    servers[leader].restart();
    // A linearizable read on the old leader waits until it has caught up.
    assert_all_there(&servers[leader].client(), &acknowledged).await;
    for server in &servers {
        assert_all_there(&server.client(), &acknowledged).await;
    }
    let log = std::fs::read_to_string(servers[leader].log_path()).expect("server log");
    assert!(
        log.contains("installed a raft snapshot"),
        "the old leader caught up without a snapshot:\n{log}"
    );
}
