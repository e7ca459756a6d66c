//! What a long command is doing, for the person waiting: on a terminal, one
//! line per step, redrawn in place while it runs (`⠹ nodes Ready: 2/3`) and
//! finished with a tick and the time it took; elsewhere (a pipe, a log
//! file, CI) nothing but the notes and results, one plain line each.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

#[derive(Debug, Clone, Copy)]
pub struct Progress {
    terminal: bool,
}

impl Progress {
    /// Draws on stdout when it is a terminal.
    pub fn stdout() -> Self {
        Self { terminal: std::io::stdout().is_terminal() }
    }

    /// Starts a step; it is drawn at once on a terminal.
    pub fn step(&self, what: impl Into<String>) -> Step {
        let step = Step { terminal: self.terminal, what: what.into(), started: Instant::now(), frame: 0 };
        step.draw("");
        step
    }

    /// A line worth reading anywhere (what was found, what was done).
    pub fn note(&self, text: impl AsRef<str>) {
        let mut out = std::io::stdout().lock();
        if self.terminal {
            let _ = write!(out, "\r\x1b[2K");
        }
        let _ = writeln!(out, "{}", text.as_ref());
    }
}

/// A step in progress.
pub struct Step {
    terminal: bool,
    what: String,
    started: Instant,
    frame: usize,
}

impl Step {
    /// Redraws the step with how far it got (`2/3 Ready`).
    pub fn update(&mut self, detail: &str) {
        self.frame += 1;
        self.draw(detail);
    }

    fn draw(&self, detail: &str) {
        if !self.terminal {
            return;
        }
        let spinner = SPINNER[self.frame % SPINNER.len()];
        let detail = if detail.is_empty() { String::new() } else { format!(": {detail}") };
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\r\x1b[2K{spinner} {}{detail} ({})", self.what, seconds(self.started.elapsed()));
        let _ = out.flush();
    }

    /// Ends the step (on a terminal: a tick, what it did, and how long it took).
    pub fn done(self, detail: &str) {
        if !self.terminal {
            return;
        }
        let detail = if detail.is_empty() { String::new() } else { format!(": {detail}") };
        println!("\r\x1b[2K✓ {}{detail} ({})", self.what, seconds(self.started.elapsed()));
    }
}

/// `0.4 s`, `12 s`.
pub fn seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 10.0 { format!("{secs:.1} s") } else { format!("{secs:.0} s") }
}

/// `1.2 MB/s` from a byte count and the time it took.
pub fn rate(bytes: u64, took: Duration) -> String {
    let per_second = bytes as f64 / took.as_secs_f64().max(0.001);
    format!("{}/s", size(per_second as u64))
}

/// `512 B`, `3.4 kB`, `12.0 MB` (decimal units, as registries and tools show them).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_rates_and_times_read_well() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(3_400), "3.4 kB");
        assert_eq!(size(12_000_000), "12.0 MB");
        assert_eq!(rate(2_000_000, Duration::from_secs(2)), "1.0 MB/s");
        assert_eq!(seconds(Duration::from_millis(420)), "0.4 s");
        assert_eq!(seconds(Duration::from_secs(42)), "42 s");
    }
}
