//! `EtcdStore`: the [`Store`] contract on a real etcd (v3 API), so r8s can run
//! on etcd as Kubernetes does. Keys are stored as given.
//!
//! Every write is one etcd transaction, so etcd alone decides compare-and-swap:
//! the write runs if the key exists (or, for create, does not) and has the
//! expected mod revision; otherwise the transaction reads the key instead, to
//! tell the caller why in the same round trip.
//!
//! etcd must accept requests as large as [`crate::MAX_VALUE_SIZE`] plus some overhead
//! (`--max-request-bytes`; its default is 1.5 MiB), as the test fixture does.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, KvClient, TxnOp, TxnOpResponse,
    TxnResponse, WatchClient, WatchOptions,
};
use futures::StreamExt;

use crate::mvcc::check_value_size;
use crate::{
    EventKind, KeyValue, RangeRequest, RangeResponse, Result, Revision, Store, StoreError,
    WatchEvent, WatchStream,
};

/// Responses can hold many large values; like Kubernetes' etcd client, accept
/// any size gRPC can frame.
const MAX_RESPONSE_SIZE: usize = i32::MAX as usize;

/// A key to ask for when only the response header (the revision) matters.
const ANY_KEY: &str = "/";

pub struct EtcdStore {
    kv: KvClient,
    watch: WatchClient,
    /// The highest compaction point this store has seen. etcd's "compacted"
    /// error on reads does not say where the compaction point is.
    compacted: AtomicI64,
}

impl EtcdStore {
    /// Connects to an etcd cluster at `endpoints` (URLs like `http://127.0.0.1:2379`).
    pub async fn connect<E: AsRef<str>>(endpoints: &[E]) -> Result<Self> {
        let client = Client::connect(endpoints, None)
            .await
            .map_err(|error| StoreError::Unavailable(format!("cannot connect to etcd: {error}")))?;
        Ok(EtcdStore {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_RESPONSE_SIZE),
            watch: client
                .watch_client()
                .max_decoding_message_size(MAX_RESPONSE_SIZE),
            compacted: AtomicI64::new(0),
        })
    }

    /// Puts `value` if every condition holds and returns the new key-value;
    /// otherwise returns the key as it is (`None`: missing).
    async fn put_if(
        &self,
        key: &str,
        value: Bytes,
        conditions: Vec<Compare>,
    ) -> Result<Result<KeyValue, Option<KeyValue>>> {
        check_value_size(key, &value)?;
        let txn = etcd_client::Txn::new()
            .when(conditions)
            .and_then([
                TxnOp::put(key, value.to_vec(), None),
                // The new revisions, without sending the value back.
                TxnOp::get(key, Some(GetOptions::new().with_keys_only())),
            ])
            .or_else([TxnOp::get(key, None)]);
        let response = self.kv.clone().txn(txn).await.map_err(store_error)?;
        let written = response.succeeded();
        let found = read_in_txn(&response)?;
        if !written {
            return Ok(Err(found));
        }
        let meta = found.ok_or_else(|| {
            StoreError::Internal(format!("etcd wrote {key:?} but did not return it"))
        })?;
        Ok(Ok(KeyValue { value, ..meta }))
    }

    /// Maps etcd's errors for reads at `requested` to the store's.
    async fn read_error(&self, error: etcd_client::Error, requested: Revision) -> StoreError {
        if has_message(&error, COMPACTED) {
            self.compacted_error(requested)
        } else if has_message(&error, FUTURE) {
            match self.current_revision().await {
                Ok(current) => StoreError::FutureRevision { requested, current },
                Err(error) => error,
            }
        } else {
            store_error(error)
        }
    }

    fn compacted_error(&self, requested: Revision) -> StoreError {
        let known = self.compacted.load(Ordering::Relaxed);
        // etcd only says that `requested` is gone: so the point is past it.
        StoreError::Compacted {
            requested,
            compacted: known.max(requested + 1),
        }
    }

    /// Fails with `Compacted` if history after `after` is no longer complete:
    /// etcd only reports that on a watch after the watch has started.
    async fn check_watchable(&self, after: Revision) -> Result<()> {
        if after <= 0 {
            return Ok(());
        }
        let probe = GetOptions::new().with_count_only().with_revision(after);
        match self.kv.clone().get(ANY_KEY, Some(probe)).await {
            Ok(_) => Ok(()),
            // Watching from the future is fine: the watch waits for it.
            Err(error) if has_message(&error, FUTURE) => Ok(()),
            Err(error) => Err(self.read_error(error, after).await),
        }
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let absent = Compare::create_revision(key, CompareOp::Equal, 0);
        self.put_if(key, value, vec![absent])
            .await?
            .map_err(|_| StoreError::AlreadyExists {
                key: key.to_owned(),
            })
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        self.put_if(key, value, exists_at(key, expected))
            .await?
            .map_err(|current| rejected(key, expected, current))
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        let txn = etcd_client::Txn::new()
            .when(exists_at(key, expected))
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let response = self.kv.clone().txn(txn).await.map_err(store_error)?;
        if !response.succeeded() {
            return Err(rejected(key, expected, read_in_txn(&response)?));
        }
        let revision = response
            .header()
            .map(|header| header.revision())
            .ok_or_else(|| StoreError::Internal("etcd sent no header".into()))?;
        let prev = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Delete(mut deleted) => deleted.take_prev_kvs().into_iter().next(),
            _ => None,
        });
        let prev = prev.ok_or_else(|| {
            StoreError::Internal(format!("etcd deleted {key:?} but did not return it"))
        })?;
        Ok((from_etcd(prev)?, revision))
    }

    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>> {
        let options = revision.map(|revision| GetOptions::new().with_revision(revision));
        let mut response = match self.kv.clone().get(key, options).await {
            Ok(response) => response,
            Err(error) => return Err(self.read_error(error, revision.unwrap_or_default()).await),
        };
        response
            .take_kvs()
            .into_iter()
            .next()
            .map(from_etcd)
            .transpose()
    }

    async fn range(&self, request: RangeRequest) -> Result<RangeResponse> {
        let prefix = request.prefix.as_str();
        let start = match &request.start_after {
            // The smallest key after `after`.
            Some(after) if after.as_str() >= prefix => format!("{after}\0"),
            _ => prefix.to_owned(),
        };
        let mut options = GetOptions::new().with_range(prefix_end(prefix));
        if let Some(limit) = request.limit.filter(|&limit| limit > 0) {
            options = options.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        if let Some(revision) = request.revision {
            options = options.with_revision(revision);
        }
        let mut response = match self.kv.clone().get(first_key(&start), Some(options)).await {
            Ok(response) => response,
            Err(error) => {
                return Err(self
                    .read_error(error, request.revision.unwrap_or_default())
                    .await)
            }
        };
        let revision = match (request.revision, response.header()) {
            (Some(revision), _) => revision,
            (None, Some(header)) => header.revision(),
            (None, None) => return Err(StoreError::Internal("etcd sent no header".into())),
        };
        let more = response.more();
        let kvs = response
            .take_kvs()
            .into_iter()
            .map(from_etcd)
            .collect::<Result<_>>()?;
        Ok(RangeResponse {
            kvs,
            more,
            revision,
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        self.check_watchable(after).await?;
        let options = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_prev_key()
            .with_start_revision(after + 1);
        let events = self
            .watch
            .clone()
            .watch(first_key(prefix), Some(options))
            .await
            .map_err(store_error)?;
        let state = Some(EtcdEvents {
            events,
            pending: VecDeque::new(),
            after,
        });
        Ok(futures::stream::unfold(state, |state| async move {
            let mut state = state?;
            match state.next().await {
                Ok(event) => Some((Ok(event), Some(state))),
                // An error ends the watch.
                Err(error) => Some((Err(error), None)),
            }
        })
        .boxed())
    }

    async fn current_revision(&self) -> Result<Revision> {
        let response = self
            .kv
            .clone()
            .get(ANY_KEY, Some(GetOptions::new().with_count_only()))
            .await
            .map_err(store_error)?;
        response
            .header()
            .map(|header| header.revision())
            .ok_or_else(|| StoreError::Internal("etcd sent no header".into()))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.kv.clone().compact(revision, None).await {
            Ok(_) => {
                self.compacted.fetch_max(revision, Ordering::Relaxed);
                Ok(())
            }
            // Already compacted that far: nothing to do, as in the other stores.
            Err(error) if has_message(&error, COMPACTED) => Ok(()),
            Err(error) => Err(self.read_error(error, revision).await),
        }
    }
}

/// Reads etcd's events one at a time.
struct EtcdEvents {
    events: etcd_client::WatchStream,
    /// Events of the last response not yet handed out.
    pending: VecDeque<WatchEvent>,
    after: Revision,
}

impl EtcdEvents {
    async fn next(&mut self) -> Result<WatchEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            let response = self
                .events
                .message()
                .await
                .map_err(store_error)?
                .ok_or_else(|| StoreError::Unavailable("etcd closed the watch".into()))?;
            if response.canceled() {
                return Err(match response.compact_revision() {
                    0 => StoreError::Unavailable(format!(
                        "etcd canceled the watch: {}",
                        response.cancel_reason()
                    )),
                    compacted => StoreError::Compacted {
                        requested: self.after,
                        compacted,
                    },
                });
            }
            for event in response.events() {
                self.pending.push_back(watch_event(event)?);
            }
        }
    }
}

fn watch_event(event: &etcd_client::Event) -> Result<WatchEvent> {
    let kind = match event.event_type() {
        etcd_client::EventType::Put => EventKind::Put,
        etcd_client::EventType::Delete => EventKind::Delete,
    };
    let kv = event
        .kv()
        .ok_or_else(|| StoreError::Internal("etcd sent an event without a key".into()))?;
    Ok(WatchEvent {
        kind,
        kv: from_etcd(kv.clone())?,
        prev: event.prev_kv().cloned().map(from_etcd).transpose()?,
    })
}

/// The conditions for changing `key`: it exists and, if given, has the
/// `expected` mod revision. (A mod revision compare alone would pass for a
/// missing key when `expected` is 0.)
fn exists_at(key: &str, expected: Option<Revision>) -> Vec<Compare> {
    let mut conditions = vec![Compare::create_revision(key, CompareOp::Greater, 0)];
    conditions
        .extend(expected.map(|expected| Compare::mod_revision(key, CompareOp::Equal, expected)));
    conditions
}

/// Why a conditional write to `key` did not happen, given the key as it is.
fn rejected(key: &str, expected: Option<Revision>, current: Option<KeyValue>) -> StoreError {
    match (current, expected) {
        (None, _) => StoreError::NotFound {
            key: key.to_owned(),
        },
        (Some(current), Some(expected)) => StoreError::Conflict {
            key: key.to_owned(),
            expected,
            current: Some(current),
        },
        (Some(_), None) => {
            StoreError::Internal(format!("etcd refused to write the existing key {key:?}"))
        }
    }
}

/// The key read by the `get` of a transaction, if it exists.
fn read_in_txn(response: &TxnResponse) -> Result<Option<KeyValue>> {
    let read = response.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(mut read) => Some(read.take_kvs()),
        _ => None,
    });
    let kvs =
        read.ok_or_else(|| StoreError::Internal("etcd's transaction answer has no read".into()))?;
    kvs.into_iter().next().map(from_etcd).transpose()
}

fn from_etcd(kv: etcd_client::KeyValue) -> Result<KeyValue> {
    let (create_revision, mod_revision, version) =
        (kv.create_revision(), kv.mod_revision(), kv.version());
    let (key, value) = kv.into_key_value();
    let key = String::from_utf8(key).map_err(|error| {
        StoreError::Internal(format!("etcd has a key that is not UTF-8: {error}"))
    })?;
    Ok(KeyValue {
        key,
        value: Bytes::from(value),
        create_revision,
        mod_revision,
        version,
    })
}

/// etcd does not allow an empty key: the first of all keys is "\0".
fn first_key(key: &str) -> &str {
    if key.is_empty() {
        "\0"
    } else {
        key
    }
}

/// The end of the key range that holds every key starting with `prefix`, as
/// etcd's clients compute it: the prefix with its last byte below 0xff bumped.
/// "\0" means "to the end of all keys".
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

const COMPACTED: &str = "required revision has been compacted";
const FUTURE: &str = "required revision is a future revision";

fn has_message(error: &etcd_client::Error, message: &str) -> bool {
    matches!(error, etcd_client::Error::GRpcStatus(status) if status.message().contains(message))
}

fn store_error(error: etcd_client::Error) -> StoreError {
    use tonic::Code;
    match &error {
        etcd_client::Error::TransportError(_) => StoreError::Unavailable(error.to_string()),
        etcd_client::Error::GRpcStatus(status)
            if matches!(
                status.code(),
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled
            ) =>
        {
            StoreError::Unavailable(error.to_string())
        }
        _ => StoreError::Internal(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bumps_the_last_byte_below_0xff() {
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0");
        assert_eq!(prefix_end("a"), b"b");
        assert_eq!(prefix_end(""), b"\0");
    }
}
