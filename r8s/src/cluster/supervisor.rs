//! Keeping a cluster's processes running: each one `r8s up` starts is
//! restarted when it dies, after a back-off that doubles from 1 s to 30 s
//! and starts over once a process has run for a minute; a server that stops
//! being alive (`/livez` failing three times in a row) is killed and
//! restarted too. What died and why is logged, and so is every change of a
//! server's readiness.

use std::fs::File;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{Layout, ProcessId};

const FIRST_DELAY: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(30);
/// A process that ran this long is taken as healthy: its next restart is quick again.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Consecutive failed liveness probes before a server is restarted.
pub const LIVENESS_FAILURES: u32 = 3;

/// The delay before each restart of one process.
#[derive(Debug, Clone)]
pub struct RestartBackoff {
    next: Duration,
}

impl Default for RestartBackoff {
    fn default() -> Self {
        Self { next: FIRST_DELAY }
    }
}

impl RestartBackoff {
    /// How long to wait before restarting a process that ran for `ran_for`.
    pub fn delay(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= STABLE_AFTER {
            self.next = FIRST_DELAY;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_DELAY);
        delay
    }
}

/// One process of the cluster, started again whenever it ends.
pub struct Supervised {
    pub name: String,
    command: Box<dyn Fn() -> Command + Send>,
    layout: Layout,
    child: Option<Child>,
    started: Instant,
    backoff: RestartBackoff,
    restart_at: Option<Instant>,
    liveness_failures: u32,
    pub restarts: u32,
}

impl Supervised {
    /// Starts `name` from `command` (called again for every restart).
    pub fn start(layout: &Layout, name: &str, command: impl Fn() -> Command + Send + 'static) -> anyhow::Result<Self> {
        let mut process = Self {
            name: name.to_string(),
            command: Box::new(command),
            layout: layout.clone(),
            child: None,
            started: Instant::now(),
            backoff: RestartBackoff::default(),
            restart_at: None,
            liveness_failures: 0,
            restarts: 0,
        };
        process.spawn()?;
        Ok(process)
    }

    /// Starts the process, logging to its own file (appended to, so a
    /// restart keeps what the dead one said), and records it (pid file,
    /// the cluster's daemons cgroup) so that `r8s down` finds it and all it
    /// starts. It is moved into the cgroup before it starts anything of its
    /// own: a server starts nothing, an agent starts its runtime only once
    /// it has talked to the API.
    fn spawn(&mut self) -> anyhow::Result<()> {
        let log_path = self.layout.logs_dir().join(format!("{}.log", self.name));
        let log = File::options().create(true).append(true).open(&log_path).with_context(|| format!("cannot open {}", log_path.display()))?;
        let stdout = log.try_clone()?;
        let child = (self.command)()
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start r8s {}", self.name))?;
        let pid = child.id() as i32;
        self.child = Some(child);
        self.started = Instant::now();
        let procs = self.layout.daemons_cgroup().join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).with_context(|| format!("cannot move r8s {} into {}", self.name, procs.display()))?;
        if let Some(id) = ProcessId::of(pid) {
            id.write(&self.layout.pid_file(&self.name))?;
        }
        Ok(())
    }

    /// Notices an exit and restarts when the back-off has passed; returns
    /// what happened, for the log.
    pub fn check(&mut self) -> Option<String> {
        if let Some(child) = &mut self.child {
            let status = match child.try_wait() {
                Ok(None) => return None,
                Ok(Some(status)) => status,
                Err(error) => return Some(format!("r8s {}: cannot wait for it: {error}", self.name)),
            };
            self.child = None;
            let delay = self.backoff.delay(self.started.elapsed());
            self.restart_at = Some(Instant::now() + delay);
            return Some(format!("r8s {} {}; restarting it in {} s (its log: {})", self.name, describe_exit(status), delay.as_secs(), self.log_path_text()));
        }
        let due = self.restart_at.is_some_and(|at| Instant::now() >= at);
        if !due {
            return None;
        }
        self.restart_at = None;
        self.restarts += 1;
        self.liveness_failures = 0;
        Some(match self.spawn() {
            Ok(()) => format!("r8s {} restarted (restart {})", self.name, self.restarts),
            Err(error) => {
                self.restart_at = Some(Instant::now() + self.backoff.delay(Duration::ZERO));
                format!("r8s {} could not be restarted: {error:#}", self.name)
            }
        })
    }

    /// Takes one liveness probe's outcome; after [`LIVENESS_FAILURES`] in a
    /// row the process is killed (and restarted by [`Supervised::check`]).
    pub fn liveness(&mut self, alive: bool) -> Option<String> {
        if alive || self.child.is_none() {
            self.liveness_failures = 0;
            return None;
        }
        self.liveness_failures += 1;
        if self.liveness_failures < LIVENESS_FAILURES {
            return None;
        }
        self.liveness_failures = 0;
        self.signal(libc::SIGKILL);
        Some(format!("r8s {} failed {LIVENESS_FAILURES} liveness checks in a row; killed it", self.name))
    }

    /// Whether it runs now (not waiting for a restart).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether it has not exited (an exit is still noticed by [`Supervised::check`]).
    pub fn is_alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// SIGTERM, and no more restarts; [`Supervised::stop`] waits for it.
    /// SIGCONT too: a process someone stopped (SIGSTOP) must see the SIGTERM.
    pub fn terminate(&mut self) {
        self.restart_at = None;
        self.signal(libc::SIGTERM);
        self.signal(libc::SIGCONT);
    }

    /// Stops it for good: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        self.terminate();
        let deadline = Instant::now() + grace;
        while let Some(child) = &mut self.child {
            match child.try_wait() {
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    self.child = None;
                }
                _ => self.child = None,
            }
        }
        let _ = std::fs::remove_file(self.layout.pid_file(&self.name));
    }

    fn signal(&self, signal: libc::c_int) {
        if let Some(child) = &self.child {
            // SAFETY: signalling our own child, not yet reaped, by its pid.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
    }

    fn log_path_text(&self) -> String {
        self.layout.logs_dir().join(format!("{}.log", self.name)).display().to_string()
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// "exited with code 1", "was killed by signal 9 (SIGKILL)".
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => {
            let name = match signal {
                libc::SIGKILL => " (SIGKILL)",
                libc::SIGTERM => " (SIGTERM)",
                libc::SIGSEGV => " (SIGSEGV)",
                libc::SIGABRT => " (SIGABRT)",
                _ => "",
            };
            format!("was killed by signal {signal}{name}")
        }
        (None, None) => "ended".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn restarts_back_off_and_start_over_after_a_stable_run() {
        let mut backoff = RestartBackoff::default();
        let quick = Duration::from_secs(2);
        let delays: Vec<u64> = (0..7).map(|_| backoff.delay(quick).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff.delay(Duration::from_secs(61)).as_secs(), 1, "a minute of running resets it");
        assert_eq!(backoff.delay(quick).as_secs(), 2);
    }

    #[test]
    fn exits_are_described() {
        assert_eq!(describe_exit(ExitStatus::from_raw(1 << 8)), "exited with code 1");
        assert_eq!(describe_exit(ExitStatus::from_raw(9)), "was killed by signal 9 (SIGKILL)");
    }
}
