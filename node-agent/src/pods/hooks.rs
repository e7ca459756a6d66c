//! postStart and preStop hooks: exec, httpGet, tcpSocket and sleep handlers.
//! They run like probes (same exec and HTTP code), with the time they are given.

use std::time::Duration;

use client::k8s_openapi::api::core::v1::{LifecycleHandler, Probe};

use super::probe::{run_once, Outcome, Target};

/// Runs `handler` for at most `limit`; `Err` carries the failure message.
pub async fn run(handler: &LifecycleHandler, target: &Target, limit: Duration) -> Result<(), String> {
    if let Some(sleep) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(limit)).await;
        return Ok(());
    }
    let probe = Probe {
        exec: handler.exec.clone(),
        http_get: handler.http_get.clone(),
        tcp_socket: handler.tcp_socket.clone(),
        timeout_seconds: Some(limit.as_secs().clamp(1, i32::MAX as u64) as i32),
        ..Default::default()
    };
    match run_once(&probe, target).await {
        Outcome::Success => Ok(()),
        Outcome::Failure(message) => Err(message),
    }
}
