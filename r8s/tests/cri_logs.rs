//! CRI ReopenContainerLog through the gRPC API, as the kubelet rotates a
//! container's log: rename the file, ask the runtime to reopen it, and the
//! output goes on in a new file at the log path. Needs root.

mod cri_support;

use std::path::Path;
use std::time::Duration;

use cri_support::{Cri, Node};
use runtime::logs::parse_line;
use tonic::Code;

/// Prints `tick <n>` for n = 0, 1, 2, ... about five times a second.
const TICKER: &[&str] = &["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"];

/// The tick numbers in the CRI log at `path` (none while it does not exist).
fn ticks(path: &Path) -> Vec<u32> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(parse_line)
        .map(|record| record.content.strip_prefix("tick ").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{text}")))
        .collect()
}

/// Waits (at most ~30 s) until the log at `path` holds `count` ticks.
async fn wait_for_ticks(path: &Path, count: usize) -> Vec<u32> {
    for _ in 0..300 {
        let ticks = ticks(path);
        if ticks.len() >= count {
            return ticks;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} did not get {count} lines: {:?}", path.display(), ticks(path));
}

async fn reopen(cri: &mut Cri, id: &str) -> Result<(), tonic::Status> {
    cri.client.runtime.reopen_container_log(id).await
}

fn assert_consecutive(ticks: &[u32]) {
    assert!(ticks.windows(2).all(|w| w[1] == w[0] + 1), "{ticks:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reopen_container_log_continues_in_a_new_file_after_a_rename() {
    let node = Node::new(None).await;
    let mut cri = node.start().await;
    let logs = node.dir.path().join("pod-logs");
    let logs_dir = logs.display().to_string();
    let pod = cri.run_pod("rotate", |c| c.log_directory = logs_dir.clone()).await.unwrap();
    let id = cri.run(&pod, "ticker", TICKER).await;
    let log = logs.join("ticker/0.log");
    let rotated = logs.join("ticker/0.log.20261129-183000");
    wait_for_ticks(&log, 3).await;

    // As the kubelet rotates: rename, then reopen. Until the reopen the shim
    // still writes to the renamed file.
    std::fs::rename(&log, &rotated).unwrap();
    reopen(&mut cri, &id).await.unwrap();
    let old = ticks(&rotated);
    let new = wait_for_ticks(&log, 3).await;

    // Every line once, in order: the renamed file keeps the old ones, the new
    // file goes on from the next.
    assert_eq!(old[0], 0, "{old:?}");
    assert_consecutive(&old);
    assert_eq!(new[0], old.last().unwrap() + 1, "old {old:?}, new {new:?}");
    assert_consecutive(&new);
    wait_for_ticks(&log, new.len() + 2).await;
    assert_eq!(ticks(&rotated), old, "the renamed file got lines after the reopen");

    // A second rotation works as the first.
    std::fs::rename(&log, &rotated).unwrap();
    reopen(&mut cri, &id).await.unwrap();
    let newest = wait_for_ticks(&log, 1).await;
    assert_eq!(newest[0], ticks(&rotated).last().unwrap() + 1);
    cri.remove_pod(&pod).await;
    cri.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reopen_container_log_refuses_unknown_and_stopped_containers() {
    let node = Node::new(None).await;
    let mut cri = node.start().await;
    let logs_dir = node.dir.path().join("pod-logs").display().to_string();
    let pod = cri.run_pod("rotate-bad", |c| c.log_directory = logs_dir.clone()).await.unwrap();

    assert_eq!(reopen(&mut cri, "").await.expect_err("empty id").code(), Code::InvalidArgument);
    assert_eq!(reopen(&mut cri, "nosuch").await.expect_err("unknown").code(), Code::NotFound);
    let created = cri.create(&pod, "created", TICKER).await.unwrap();
    let error = reopen(&mut cri, &created).await.expect_err("not started");
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(error.message().contains("is not running"), "{}", error.message());

    let stopped = cri.run(&pod, "stopped", TICKER).await;
    reopen(&mut cri, &stopped).await.unwrap();
    cri.client.runtime.stop_container(&stopped, 1).await.unwrap();
    let error = reopen(&mut cri, &stopped).await.expect_err("stopped");
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(error.message().contains("is not running"), "{}", error.message());
    cri.remove_pod(&pod).await;
    cri.shutdown().await;
}
