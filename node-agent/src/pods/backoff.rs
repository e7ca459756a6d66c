//! Kubernetes' back-off (client-go's `flowcontrol.Backoff`, as the kubelet uses
//! it): 10 s, doubling up to 5 min, forgotten after 10 min without a failure.
//!
//! For a crashing container the kubelet restarts at once the first time, then
//! waits 10 s, 20 s, ... measured from the exit; for a failing image pull it
//! waits from the failure, starting at 10 s.

use std::time::{Duration, SystemTime};

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);

/// The back-off of one container (or of one image pull).
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    /// The current delay and when it was last raised.
    entry: Option<(Duration, SystemTime)>,
}

impl Backoff {
    /// The current delay, for messages (`back-off 20s restarting ...`).
    pub fn delay(&self) -> Duration {
        self.entry.map_or(INITIAL, |(delay, _)| delay)
    }

    /// How long to wait still when the last failure happened at `since`.
    pub fn remaining_since(&self, since: SystemTime, now: SystemTime) -> Option<Duration> {
        let (delay, _) = self.entry?;
        let elapsed = now.duration_since(since).unwrap_or_default();
        (elapsed < delay).then(|| delay - elapsed)
    }

    /// How long to wait still, counted from the last [`Backoff::next`].
    pub fn remaining(&self, now: SystemTime) -> Option<Duration> {
        self.remaining_since(self.entry?.1, now)
    }

    /// Raises the delay after a failure: 10 s the first time (or after 10
    /// quiet minutes), else doubled, at most 5 min.
    pub fn next(&mut self, now: SystemTime) {
        let delay = match self.entry {
            Some((delay, last)) if now.duration_since(last).unwrap_or_default() <= 2 * MAX => (delay * 2).min(MAX),
            _ => INITIAL,
        };
        self.entry = Some((delay, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_loop_waits_grow_to_five_minutes() {
        let mut backoff = Backoff::default();
        let mut now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(backoff.remaining_since(now, now), None, "the first restart is immediate");
        let mut waits = Vec::new();
        for _ in 0..8 {
            // The container restarts, runs a second and exits again.
            backoff.next(now);
            now += Duration::from_secs(1);
            let wait = backoff.remaining_since(now, now).unwrap();
            waits.push(wait.as_secs());
            now += wait;
        }
        assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn forgotten_after_ten_quiet_minutes() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut backoff = Backoff::default();
        for _ in 0..4 {
            backoff.next(start);
        }
        assert_eq!(backoff.delay(), Duration::from_secs(80));
        let later = start + Duration::from_secs(601);
        backoff.next(later);
        assert_eq!(backoff.delay(), INITIAL);
        assert_eq!(backoff.remaining(later), Some(INITIAL));
        assert_eq!(backoff.remaining(later + INITIAL), None);
    }
}
