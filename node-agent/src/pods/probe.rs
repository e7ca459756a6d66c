//! Liveness, readiness and startup probes: one task per probe of a running
//! container, with Kubernetes' delays, periods, timeouts and thresholds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::k8s_openapi::api::core::v1::{Container, Probe};
use client::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::cri::Cri;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    /// As events name it (`Liveness probe failed: ...`).
    pub fn title(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }
}

/// The result of one probe run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(String),
}

/// Consecutive results turned into a verdict by the thresholds.
#[derive(Debug, Clone)]
pub struct Verdict {
    success_threshold: u32,
    failure_threshold: u32,
    successes: u32,
    failures: u32,
    /// `None` until a threshold is crossed.
    pub passing: Option<bool>,
}

impl Verdict {
    pub fn new(probe: &Probe) -> Self {
        Self {
            success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
            successes: 0,
            failures: 0,
            passing: None,
        }
    }

    /// Counts one result; returns whether the verdict changed.
    pub fn record(&mut self, outcome: &Outcome) -> bool {
        let before = self.passing;
        match outcome {
            Outcome::Success => {
                self.failures = 0;
                self.successes += 1;
                if self.successes >= self.success_threshold {
                    self.passing = Some(true);
                }
            }
            Outcome::Failure(_) => {
                self.successes = 0;
                self.failures += 1;
                if self.failures >= self.failure_threshold {
                    self.passing = Some(false);
                }
            }
        }
        before != self.passing
    }
}

/// What the probes of one container found, read by the pod worker.
#[derive(Debug, Clone, Default)]
pub struct Results {
    pub ready: bool,
    pub started: bool,
    /// Set when liveness or startup failed: the container must be restarted.
    pub failed: Option<Kind>,
}

/// What a probe runs against.
#[derive(Clone)]
pub struct Target {
    pub cri: Cri,
    pub container_id: String,
    pub container: Container,
    pub pod_ip: String,
}

/// Runs one probe with its timeout.
pub async fn run_once(probe: &Probe, target: &Target) -> Outcome {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        let call = target.cri.runtime.exec_sync(&target.container_id, command, timeout.as_secs() as i64);
        return match tokio::time::timeout(timeout + Duration::from_secs(1), call).await {
            Err(_) => Outcome::Failure(format!("command timed out after {}s", timeout.as_secs())),
            Ok(Err(status)) => Outcome::Failure(status.message().to_string()),
            Ok(Ok(reply)) => {
                if reply.exit_code == 0 {
                    Outcome::Success
                } else {
                    let mut output = String::from_utf8_lossy(&reply.stdout).into_owned();
                    output.push_str(&String::from_utf8_lossy(&reply.stderr));
                    Outcome::Failure(output)
                }
            }
        };
    }
    if let Some(http) = &probe.http_get {
        if http.scheme.as_deref() == Some("HTTPS") {
            return Outcome::Failure("r8s does not support HTTPS probes".into());
        }
        let host = http.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| target.pod_ip.clone());
        let Some(port) = resolve_port(&http.port, &target.container) else {
            return Outcome::Failure(format!("unknown port {:?}", http.port));
        };
        let path = http.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "/".into());
        let headers: Vec<(String, String)> = http.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect();
        return match tokio::time::timeout(timeout, http_get(&host, port, &path, &headers)).await {
            Err(_) => Outcome::Failure(format!("Get \"http://{host}:{port}{path}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)")),
            Ok(Err(error)) => Outcome::Failure(format!("Get \"http://{host}:{port}{path}\": {error}")),
            Ok(Ok(code)) if (200..400).contains(&code) => Outcome::Success,
            Ok(Ok(code)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let host = tcp.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| target.pod_ip.clone());
        let Some(port) = resolve_port(&tcp.port, &target.container) else {
            return Outcome::Failure(format!("unknown port {:?}", tcp.port));
        };
        return match tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port))).await {
            Ok(Ok(_)) => Outcome::Success,
            Ok(Err(error)) => Outcome::Failure(format!("dial tcp {host}:{port}: {error}")),
            Err(_) => Outcome::Failure(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    Outcome::Failure("r8s supports exec, httpGet and tcpSocket probes only".into())
}

/// A port given by number or by the name of one of the container's ports.
fn resolve_port(port: &IntOrString, container: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(number) => u16::try_from(*number).ok(),
        IntOrString::String(name) => name.parse().ok().or_else(|| {
            let port = container.ports.iter().flatten().find(|p| p.name.as_deref() == Some(name))?;
            u16::try_from(port.container_port).ok()
        }),
    }
}

/// A minimal HTTP/1.1 GET; returns the status code.
async fn http_get(host: &str, port: u16, path: &str, headers: &[(String, String)]) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect((host, port)).await?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut buffer = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP response"))
}

/// Shared between a container's probe tasks and its pod worker.
pub type SharedResults = Arc<Mutex<Results>>;

/// Something to tell about a failed probe run (an `Unhealthy` event).
pub type OnFailure = Arc<dyn Fn(Kind, String) + Send + Sync>;

/// Starts the probe tasks of a container that just started. The returned
/// handles are aborted when the container goes away.
pub fn start(target: Target, results: SharedResults, wake: Arc<Notify>, on_failure: OnFailure) -> Vec<tokio::task::JoinHandle<()>> {
    let container = target.container.clone();
    {
        let mut initial = lock(&results);
        initial.started = container.startup_probe.is_none();
        initial.ready = container.readiness_probe.is_none();
    }
    let startup_done = Arc::new(Notify::new());
    let probes = [(Kind::Startup, container.startup_probe.clone()), (Kind::Liveness, container.liveness_probe.clone()), (Kind::Readiness, container.readiness_probe.clone())];
    probes
        .into_iter()
        .filter_map(|(kind, probe)| probe.map(|probe| (kind, probe)))
        .map(|(kind, probe)| {
            let (target, results, wake, on_failure, startup_done) = (target.clone(), results.clone(), wake.clone(), on_failure.clone(), startup_done.clone());
            tokio::spawn(async move {
                if kind != Kind::Startup && !lock(&results).started {
                    // Liveness and readiness wait for the startup probe.
                    startup_done.notified().await;
                }
                tokio::time::sleep(Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64)).await;
                let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
                let mut verdict = Verdict::new(&probe);
                loop {
                    let outcome = run_once(&probe, &target).await;
                    if let Outcome::Failure(message) = &outcome {
                        on_failure(kind, message.clone());
                    }
                    if verdict.record(&outcome) {
                        let passing = verdict.passing == Some(true);
                        let mut shared = lock(&results);
                        match kind {
                            Kind::Readiness => shared.ready = passing,
                            Kind::Startup if passing => {
                                shared.started = true;
                                startup_done.notify_waiters();
                            }
                            Kind::Startup | Kind::Liveness if !passing => shared.failed = Some(kind),
                            _ => {}
                        }
                        drop(shared);
                        wake.notify_one();
                        if kind == Kind::Startup && passing {
                            return;
                        }
                    }
                    tokio::time::sleep(period).await;
                }
            })
        })
        .collect()
}

pub fn lock(results: &SharedResults) -> std::sync::MutexGuard<'_, Results> {
    results.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(success: i32, failure: i32) -> Probe {
        Probe { success_threshold: Some(success), failure_threshold: Some(failure), ..Default::default() }
    }

    #[test]
    fn thresholds_decide_the_verdict() {
        let mut verdict = Verdict::new(&probe(2, 3));
        let fail = Outcome::Failure("no".into());
        assert!(!verdict.record(&Outcome::Success));
        assert!(verdict.record(&Outcome::Success));
        assert_eq!(verdict.passing, Some(true));
        assert!(!verdict.record(&fail));
        assert!(!verdict.record(&fail));
        assert!(!verdict.record(&Outcome::Success), "a success resets the failures");
        for _ in 0..2 {
            verdict.record(&fail);
        }
        assert!(verdict.record(&fail));
        assert_eq!(verdict.passing, Some(false));
    }

    #[tokio::test]
    async fn tcp_and_http_probes_against_real_sockets() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut served = 0;
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 1024];
                let _ = socket.read(&mut request).await;
                let reply: &[u8] = if served == 0 { b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" } else { b"HTTP/1.1 503 Service Unavailable\r\n\r\n" };
                let _ = socket.write_all(reply).await;
                served += 1;
            }
        });
        let container: Container = serde_json::from_value(serde_json::json!({"name": "c", "ports": [{"name": "http", "containerPort": port}]})).unwrap();
        let target = Target { cri: Cri::connect("unix:///nonexistent/r8s-test.sock").unwrap(), container_id: "x".into(), container, pod_ip: "127.0.0.1".into() };
        let http: Probe = serde_json::from_value(serde_json::json!({"httpGet": {"path": "/healthz", "port": "http"}})).unwrap();
        assert_eq!(run_once(&http, &target).await, Outcome::Success);
        assert_eq!(run_once(&http, &target).await, Outcome::Failure("HTTP probe failed with statuscode: 503".into()));
        let tcp: Probe = serde_json::from_value(serde_json::json!({"tcpSocket": {"port": port}})).unwrap();
        assert_eq!(run_once(&tcp, &target).await, Outcome::Success);
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let refused: Probe = serde_json::from_value(serde_json::json!({"tcpSocket": {"port": closed}})).unwrap();
        assert!(matches!(run_once(&refused, &target).await, Outcome::Failure(_)));
    }
}
