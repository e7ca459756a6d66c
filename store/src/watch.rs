//! Watch streams handed to callers. (Filled in by the store work.)

/// A stream of watch events in revision order. It ends with an error item when
/// the store closes the watch (too slow, shutting down).
pub type WatchStream =
    futures::stream::BoxStream<'static, crate::Result<crate::WatchEvent>>;
