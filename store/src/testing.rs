//! Test support shared by every backend's tests and by the benchmarks: the
//! conformance suite, and a real etcd to run things against.

pub mod conformance;
mod local_etcd;

use std::ops::Deref;

pub use local_etcd::{LocalEtcd, LocalEtcdError};

use crate::etcd::EtcdStore;

/// Defines one `#[tokio::test]` per conformance case in the calling module.
/// `$factory` is an expression giving a future of a fresh store, or of anything
/// that dereferences to one (a guard that also owns the store's processes); it
/// is evaluated once per case.
///
/// ```ignore
/// store::store_conformance_tests!(async { store::mem::MemStore::new() });
/// store::store_conformance_tests!(store::testing::etcd_store());
/// ```
///
/// The calling crate needs `tokio` (with `macros` and `rt-multi-thread`).
#[macro_export]
macro_rules! store_conformance_tests {
    ($factory:expr) => {
        $crate::store_conformance_tests!(@cases $factory;
            create_then_already_exists,
            update_compare_and_swap,
            delete_compare_and_swap,
            missing_keys_are_not_found,
            revisions_and_versions,
            get_at_older_revisions,
            range_pages_over_one_revision,
            watch_replays_history_then_live,
            watch_from_now_sees_only_later_writes,
            watch_resumes_without_gap_or_duplicate,
            deletes_are_watched_with_prev,
            compacted_revisions_are_refused,
            large_values_round_trip,
            concurrent_writers_get_distinct_revisions,
            compare_and_swap_under_contention,
        );
    };
    (@cases $factory:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store = $factory.await;
                $crate::testing::conformance::$case(&*store).await;
            }
        )+
    };
}

/// An [`EtcdStore`] and the etcd it talks to; dereferences to the store.
pub struct EtcdFixture {
    // Declared first so it is dropped before etcd is killed.
    store: EtcdStore,
    etcd: LocalEtcd,
}

impl EtcdFixture {
    pub fn etcd(&self) -> &LocalEtcd {
        &self.etcd
    }
}

impl Deref for EtcdFixture {
    type Target = EtcdStore;

    fn deref(&self) -> &EtcdStore {
        &self.store
    }
}

/// Starts a fresh etcd and connects a store to it. Panics if it cannot: it is
/// meant for tests.
pub async fn etcd_store() -> EtcdFixture {
    let etcd = LocalEtcd::start()
        .await
        .unwrap_or_else(|error| panic!("cannot start etcd: {error}"));
    let store = EtcdStore::connect(&[etcd.client_url()])
        .await
        .unwrap_or_else(|error| panic!("cannot connect to etcd at {}: {error}", etcd.client_url()));
    EtcdFixture { store, etcd }
}
