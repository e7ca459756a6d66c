//! `/livez`, `/readyz` and `/healthz`, as Kubernetes serves them: each runs a
//! list of named checks; `?verbose` lists them (`[+]ping ok`), `?exclude=NAME`
//! leaves one out, `/readyz/NAME` runs one alone. A failure answers 500 and
//! always lists the checks, with the reason withheld from the answer (anyone
//! may ask) and written to the log instead, once per change.
//!
//! - liveness: the process serves (`ping`) and the store's machinery runs
//!   (`store`: an embedded raft core that stopped for good fails it). A
//!   supervisor restarts a server that is not live.
//! - readiness: the store can serve a linearizable read now
//!   (`store-readiness`: a leader backed by a quorum, this server caught up).
//!   `/healthz` is readiness, as its users expect it to be.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use store::Store;

use crate::server::SharedState;

/// How long one check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Which question is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Live,
    Ready,
    /// The old endpoint: the same checks as `Ready`.
    Health,
}

impl Probe {
    fn name(self) -> &'static str {
        match self {
            Probe::Live => "livez",
            Probe::Ready => "readyz",
            Probe::Health => "healthz",
        }
    }

    fn checks(self) -> &'static [&'static str] {
        match self {
            Probe::Live => &["ping", "store"],
            Probe::Ready | Probe::Health => &["ping", "store", "store-readiness"],
        }
    }
}

/// One check's outcome: `Err` holds the reason.
pub type Outcome = Result<(), String>;

async fn run_check(store: &dyn Store, name: &str) -> Outcome {
    let check = async {
        match name {
            "store" => store.check_live().await,
            "store-readiness" => store.check_ready().await,
            _ => Ok(()),
        }
    };
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
    }
}

/// The answer to a probe from its checks' outcomes (pure).
pub fn render(probe: Probe, outcomes: &[(&str, Outcome)], verbose: bool) -> (StatusCode, String) {
    let failed = outcomes.iter().any(|(_, outcome)| outcome.is_err());
    if !failed && !verbose {
        return (StatusCode::OK, "ok".into());
    }
    let mut text = String::new();
    for (name, outcome) in outcomes {
        match outcome {
            Ok(()) => text.push_str(&format!("[+]{name} ok\n")),
            Err(_) => text.push_str(&format!("[-]{name} failed: reason withheld\n")),
        }
    }
    if failed {
        text.push_str(&format!("{} check failed\n", probe.name()));
        (StatusCode::INTERNAL_SERVER_ERROR, text)
    } else {
        text.push_str(&format!("{} check passed\n", probe.name()));
        (StatusCode::OK, text)
    }
}

/// The query's `verbose` flag and `exclude` names.
fn parse_query(query: Option<&str>) -> (bool, Vec<String>) {
    let mut verbose = false;
    let mut exclude = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "verbose" => verbose = value != "false" && value != "0",
            "exclude" => exclude.push(value.to_string()),
            _ => {}
        }
    }
    (verbose, exclude)
}

/// The last reason each check failed for (`None`: it passed), so that a
/// failure is logged when it starts and when it ends, not at every probe.
#[derive(Default)]
pub struct HealthLog {
    last: Mutex<BTreeMap<&'static str, Option<String>>>,
}

impl HealthLog {
    fn record(&self, name: &'static str, outcome: &Outcome) {
        let now = outcome.as_ref().err().cloned();
        let mut last = self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let before = last.insert(name, now.clone()).flatten();
        match (before, now) {
            (None, Some(reason)) => tracing::warn!(check = name, %reason, "health check failing"),
            (Some(_), None) => tracing::info!(check = name, "health check passing again"),
            _ => {}
        }
    }
}

async fn probe(state: &SharedState, probe: Probe, query: Option<&str>) -> Response {
    let (verbose, exclude) = parse_query(query);
    let mut outcomes = Vec::new();
    for name in probe.checks().iter().copied().filter(|name| !exclude.iter().any(|e| e == name)) {
        let outcome = run_check(state.store.as_ref(), name).await;
        state.health_log.record(name, &outcome);
        outcomes.push((name, outcome));
    }
    render(probe, &outcomes, verbose).into_response()
}

pub async fn livez(State(state): State<SharedState>, RawQuery(query): RawQuery) -> Response {
    probe(&state, Probe::Live, query.as_deref()).await
}

pub async fn readyz(State(state): State<SharedState>, RawQuery(query): RawQuery) -> Response {
    probe(&state, Probe::Ready, query.as_deref()).await
}

pub async fn healthz(State(state): State<SharedState>, RawQuery(query): RawQuery) -> Response {
    probe(&state, Probe::Health, query.as_deref()).await
}

/// `/livez/NAME`, `/readyz/NAME`, `/healthz/NAME`: one check alone.
async fn single(state: &SharedState, probe: Probe, name: &str) -> Response {
    let Some(name) = probe.checks().iter().copied().find(|check| *check == name) else {
        return (StatusCode::NOT_FOUND, format!("no such {} check: {name}\n", probe.name())).into_response();
    };
    let outcome = run_check(state.store.as_ref(), name).await;
    state.health_log.record(name, &outcome);
    match outcome {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal server error: reason withheld\n").into_response(),
    }
}

pub async fn livez_check(State(state): State<SharedState>, Path(name): Path<String>) -> Response {
    single(&state, Probe::Live, &name).await
}

pub async fn readyz_check(State(state): State<SharedState>, Path(name): Path<String>) -> Response {
    single(&state, Probe::Ready, &name).await
}

pub async fn healthz_check(State(state): State<SharedState>, Path(name): Path<String>) -> Response {
    single(&state, Probe::Health, &name).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passing_probe_says_ok_and_lists_checks_when_verbose() {
        let outcomes = [("ping", Ok(())), ("store", Ok(()))];
        assert_eq!(render(Probe::Live, &outcomes, false), (StatusCode::OK, "ok".into()));
        assert_eq!(render(Probe::Live, &outcomes, true), (StatusCode::OK, "[+]ping ok\n[+]store ok\nlivez check passed\n".into()));
    }

    #[test]
    fn a_failing_probe_lists_every_check_and_withholds_the_reason() {
        let outcomes = [("ping", Ok(())), ("store-readiness", Err("no leader".to_string()))];
        let (code, text) = render(Probe::Ready, &outcomes, false);
        assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(text, "[+]ping ok\n[-]store-readiness failed: reason withheld\nreadyz check failed\n");
    }

    #[test]
    fn queries_name_verbosity_and_exclusions() {
        assert_eq!(parse_query(Some("verbose")), (true, vec![]));
        assert_eq!(parse_query(Some("verbose=false&exclude=store&exclude=ping")), (false, vec!["store".into(), "ping".into()]));
        assert_eq!(parse_query(None), (false, vec![]));
    }
}
