//! The conformance suite against a real etcd (`/usr/bin/etcd`), one fresh
//! member per test, and what is specific to the etcd backend.

use bytes::Bytes;
use store::testing::{etcd_store, LocalEtcd};
use store::Store;

store::store_conformance_tests!(etcd_store());

#[tokio::test]
async fn keys_are_stored_as_given() {
    let fixture = etcd_store().await;
    fixture
        .create("/registry/pods/default/web", Bytes::from_static(b"{}"))
        .await
        .expect("create");

    let mut client = etcd_client::Client::connect([fixture.etcd().client_url()], None)
        .await
        .expect("connect");
    let response = client
        .get("/registry/pods/default/web", None)
        .await
        .expect("get");
    assert_eq!(response.kvs().len(), 1);
    assert_eq!(response.kvs()[0].value(), b"{}");
}

#[tokio::test]
async fn dropping_the_fixture_kills_etcd() {
    let etcd = LocalEtcd::start().await.expect("start etcd");
    let pid = etcd.pid();
    let data_dir = etcd.data_dir();
    assert!(data_dir.exists());
    drop(etcd);
    // Reaped, so no process with that PID is ours any more (or it was reused by someone else).
    let status = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_ne!(status.trim(), "etcd");
    assert!(!data_dir.exists());
}
