//! `MemStore`: the [`crate::mvcc::Mvcc`] behind a lock, in one process, nothing on
//! disk. (Filled in by the store work.)
