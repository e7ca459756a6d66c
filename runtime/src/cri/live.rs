//! What the CRI service knows of its containers' states, in memory, for its
//! answers and for the events it publishes when they change (CRI
//! `GetContainerEvents`).
//!
//! The truth stays on disk (the shims write `state.json` and `exit.json`
//! whether or not the service runs): memory is filled from it at start
//! ([`super::CriService::recover`]) and kept in step by the service's own
//! operations and by a watch on each container's shim (a pidfd, readable
//! when the shim exits, which it does right after writing `exit.json`).
//! Every change goes through [`LiveContainers::transition`], which reports
//! whether anything changed, so that each change is published exactly once
//! (through a [`cri::events::EventHub`]).
//!
//! A status or list reads memory, but for a container memory says is
//! running it also looks whether `exit.json` exists (a `stat`): an exit is
//! visible the moment the shim has recorded it, before the shim has ended
//! and its watch has fired.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::runtime::Status;
use crate::state::{self, ExitStatus};

/// A container's state as CRI reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub status: Status,
    pub exit: Option<ExitStatus>,
}

/// Every container's [`Live`] state, by id.
pub struct LiveContainers {
    states: Mutex<HashMap<String, Live>>,
    /// `<state root>/<id>/exit.json` is where a container's exit is recorded.
    state_root: PathBuf,
}

impl LiveContainers {
    pub fn new(state_root: &Path) -> Self {
        Self { states: Mutex::new(HashMap::new()), state_root: state_root.to_path_buf() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.states.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn exit_file(&self, id: &str) -> PathBuf {
        self.state_root.join(id).join("exit.json")
    }

    /// The container's state; a running one whose exit is recorded on disk
    /// is settled first (and `settled` says so, for the caller to publish).
    pub fn get(&self, id: &str) -> (Option<Live>, bool) {
        let current = self.lock().get(id).cloned();
        match current {
            Some(live) if live.status != Status::Stopped && self.exit_file(id).exists() => {
                let settled = self.settle(id);
                (self.lock().get(id).cloned(), settled)
            }
            other => (other, false),
        }
    }

    /// Sets a container's state; whether it changed.
    pub fn set(&self, id: &str, live: Live) -> bool {
        self.lock().insert(id.to_string(), live.clone()) != Some(live)
    }

    /// Applies `change` to a known container's state; whether it changed.
    pub fn transition(&self, id: &str, change: impl FnOnce(&Live) -> Option<Live>) -> bool {
        let mut states = self.lock();
        let Some(current) = states.get(id) else { return false };
        match change(current) {
            Some(next) if next != *current => {
                states.insert(id.to_string(), next);
                true
            }
            _ => false,
        }
    }

    /// The container has ended: reads its recorded exit (none: its shim died
    /// without one). Whether that changed its state.
    pub fn settle(&self, id: &str) -> bool {
        let exit = state::read_json::<ExitStatus>(&self.exit_file(id)).ok().flatten();
        self.transition(id, |live| (live.status != Status::Stopped).then(|| Live { status: Status::Stopped, exit }))
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32) -> ExitStatus {
        ExitStatus { code, signal: None, oom_killed: false, reason: None, finished_at: "2026-12-08T00:00:00Z".into() }
    }

    #[test]
    fn transitions_report_only_real_changes() {
        let dir = tempfile::tempdir().unwrap();
        let live = LiveContainers::new(dir.path());
        assert!(live.set("a", Live { status: Status::Created, exit: None }));
        assert!(!live.set("a", Live { status: Status::Created, exit: None }));
        let start = |l: &Live| (l.status == Status::Created).then(|| Live { status: Status::Running, exit: None });
        assert!(live.transition("a", start));
        assert!(!live.transition("a", start), "started once");
        assert!(!live.transition("nosuch", start));
    }

    #[test]
    fn a_recorded_exit_is_seen_before_the_shim_ends() {
        let dir = tempfile::tempdir().unwrap();
        let live = LiveContainers::new(dir.path());
        live.set("a", Live { status: Status::Running, exit: None });
        assert_eq!(live.get("a"), (Some(Live { status: Status::Running, exit: None }), false));
        std::fs::create_dir(dir.path().join("a")).unwrap();
        state::write_json(&dir.path().join("a/exit.json"), &exited(3)).unwrap();
        assert_eq!(live.get("a"), (Some(Live { status: Status::Stopped, exit: Some(exited(3)) }), true));
        assert_eq!(live.get("a").1, false, "settled once");
        assert!(!live.settle("a"), "the watch that fires later changes nothing");
    }
}
