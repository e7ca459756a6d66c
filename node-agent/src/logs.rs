//! Reading CRI log files (`<RFC 3339 nano> <stdout|stderr> <P|F> <content>`)
//! the way `kubectl logs` wants them: tail, since, timestamps, follow.

use std::time::Duration;

use client::k8s_openapi::jiff::Timestamp;

/// How a log is read (the query of `pods/log`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogOptions {
    #[serde(default, deserialize_with = "flag")]
    pub follow: bool,
    pub tail_lines: Option<i64>,
    pub since_seconds: Option<i64>,
    pub since_time: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    pub timestamps: bool,
    #[serde(default, deserialize_with = "flag")]
    pub previous: bool,
    pub limit_bytes: Option<i64>,
}

/// `true`, `1` (and an empty value, as `?follow`) are true.
fn flag<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    let text: String = serde::Deserialize::deserialize(deserializer)?;
    Ok(matches!(text.as_str(), "true" | "1" | "" | "True"))
}

/// One record of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub time: &'a str,
    pub partial: bool,
    pub content: &'a str,
}

pub fn parse_line(line: &str) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let _stream = parts.next()?;
    let tag = parts.next()?;
    let content = parts.next().unwrap_or("");
    Some(Record { time, partial: tag.starts_with('P'), content })
}

/// Turns complete CRI log text into what the client sees.
pub fn render(text: &str, options: &LogOptions, now: Timestamp) -> String {
    let since = options
        .since_seconds
        .map(|s| now - Duration::from_secs(s.max(0) as u64))
        .or_else(|| options.since_time.as_deref().and_then(|t| t.parse().ok()));
    let mut lines: Vec<String> = Vec::new();
    let mut pending = String::new();
    for record in text.lines().filter_map(parse_line) {
        if let Some(since) = since {
            if record.time.parse::<Timestamp>().is_ok_and(|t| t < since) {
                continue;
            }
        }
        if pending.is_empty() && options.timestamps {
            pending.push_str(record.time);
            pending.push(' ');
        }
        pending.push_str(record.content);
        if !record.partial {
            pending.push('\n');
            lines.push(std::mem::take(&mut pending));
        }
    }
    if let Some(tail) = options.tail_lines {
        let keep = tail.max(0) as usize;
        if lines.len() > keep {
            lines.drain(..lines.len() - keep);
        }
    }
    let mut out = lines.concat();
    if let Some(limit) = options.limit_bytes {
        let mut limit = (limit.max(0) as usize).min(out.len());
        while !out.is_char_boundary(limit) {
            limit -= 1;
        }
        out.truncate(limit);
    }
    out
}

/// For following: the records of newly appended complete lines (a trailing
/// incomplete line is left in `buffer` for the next read).
pub fn take_complete_lines(buffer: &mut String) -> String {
    match buffer.rfind('\n') {
        Some(end) => {
            let complete = buffer[..=end].to_string();
            buffer.drain(..=end);
            complete
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2026-01-01T00:00:00.000000001Z stdout F one\n\
                       2026-01-01T00:00:01Z stderr P tw\n\
                       2026-01-01T00:00:01Z stderr F o\n\
                       2026-01-01T00:00:05Z stdout F three\n";

    #[test]
    fn renders_lines_tail_and_timestamps() {
        let now: Timestamp = "2026-01-01T00:00:06Z".parse().unwrap();
        assert_eq!(render(LOG, &LogOptions::default(), now), "one\ntwo\nthree\n");
        assert_eq!(render(LOG, &LogOptions { tail_lines: Some(1), ..Default::default() }, now), "three\n");
        assert_eq!(render(LOG, &LogOptions { since_seconds: Some(3), ..Default::default() }, now), "three\n");
        let stamped = render(LOG, &LogOptions { timestamps: true, tail_lines: Some(2), ..Default::default() }, now);
        assert_eq!(stamped, "2026-01-01T00:00:01Z two\n2026-01-01T00:00:05Z three\n");
        assert_eq!(render(LOG, &LogOptions { limit_bytes: Some(5), ..Default::default() }, now), "one\nt");
    }

    #[test]
    fn options_from_a_query() {
        let options: LogOptions = serde_urlencoded::from_str("follow=true&tailLines=10&previous=1&timestamps=false").unwrap();
        assert!(options.follow && options.previous && !options.timestamps);
        assert_eq!(options.tail_lines, Some(10));
    }

    #[test]
    fn following_keeps_incomplete_lines() {
        let mut buffer = "a\nb\npart".to_string();
        assert_eq!(take_complete_lines(&mut buffer), "a\nb\n");
        assert_eq!(buffer, "part");
    }
}
