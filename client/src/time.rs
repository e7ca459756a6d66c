//! Timestamps as the API writes them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;

/// Now, as a `metav1.Time`.
pub fn now() -> Time {
    Time(Timestamp::now())
}

/// Now, as a `metav1.MicroTime`.
pub fn now_micro() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// Seconds from `earlier` to `later` (negative if `later` is before).
pub fn seconds_between(earlier: &Timestamp, later: &Timestamp) -> f64 {
    (later.as_millisecond() - earlier.as_millisecond()) as f64 / 1000.0
}
