//! Container logs in the CRI format, one record per line:
//! `<RFC 3339 nano time> <stdout|stderr> <F|P> <content>`, `P` marking a
//! partial line (a long line split in pieces); the last piece is `F`.

use std::io::{self, BufRead, Write};

/// Lines longer than this are split into partial records (as containerd).
const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Turns the bytes of two streams into CRI log records.
pub struct CriLogWriter<W: Write> {
    out: W,
    pending: [Vec<u8>; 2],
}

impl<W: Write> CriLogWriter<W> {
    pub fn new(out: W) -> Self {
        Self { out, pending: [Vec::new(), Vec::new()] }
    }

    /// Writes to `out` from now on (the log file opened again after a
    /// rotation); a line begun before stays pending and ends up in `out`.
    pub fn set_output(&mut self, out: W) {
        self.out = out;
    }

    /// Adds output of `stream`; complete lines are written at once.
    pub fn write(&mut self, stream: Stream, mut bytes: &[u8]) -> io::Result<()> {
        while let Some(newline) = bytes.iter().position(|b| *b == b'\n') {
            let mut line = std::mem::take(&mut self.pending[stream as usize]);
            line.extend_from_slice(&bytes[..newline]);
            self.record(stream, "F", &line)?;
            bytes = &bytes[newline + 1..];
        }
        let pending = &mut self.pending[stream as usize];
        pending.extend_from_slice(bytes);
        if pending.len() >= MAX_LINE {
            let line = std::mem::take(pending);
            self.record(stream, "P", &line)?;
        }
        self.out.flush()
    }

    /// Writes what is left of a stream that ended without a final newline.
    pub fn finish(&mut self, stream: Stream) -> io::Result<()> {
        let line = std::mem::take(&mut self.pending[stream as usize]);
        if !line.is_empty() {
            self.record(stream, "F", &line)?;
        }
        self.out.flush()
    }

    fn record(&mut self, stream: Stream, tag: &str, content: &[u8]) -> io::Result<()> {
        let time = crate::state::now_rfc3339();
        write!(self.out, "{time} {} {tag} ", stream.name())?;
        self.out.write_all(content)?;
        self.out.write_all(b"\n")
    }
}

/// One parsed log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub time: String,
    pub stream: Stream,
    pub partial: bool,
    pub content: String,
}

/// Parses one line of a CRI log; `None` for a malformed line.
pub fn parse_line(line: &str) -> Option<Record> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?.to_string();
    let stream = match parts.next()? {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        "P" => true,
        "F" => false,
        _ => return None,
    };
    Some(Record { time, stream, partial, content: parts.next().unwrap_or("").to_string() })
}

/// Copies the content of a CRI log to `stdout` and `stderr` as the container
/// wrote it.
pub fn print_log(log: impl BufRead, stdout: &mut impl Write, stderr: &mut impl Write) -> io::Result<()> {
    for line in log.lines() {
        if let Some(record) = parse_line(&line?) {
            let out: &mut dyn Write = match record.stream {
                Stream::Stdout => stdout,
                Stream::Stderr => stderr,
            };
            out.write_all(record.content.as_bytes())?;
            if !record.partial {
                out.write_all(b"\n")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_records_and_parse_back() {
        let mut writer = CriLogWriter::new(Vec::new());
        writer.write(Stream::Stdout, b"hello\nwor").unwrap();
        writer.write(Stream::Stderr, b"oops\n").unwrap();
        writer.write(Stream::Stdout, b"ld\nend").unwrap();
        writer.finish(Stream::Stdout).unwrap();
        let text = String::from_utf8(writer.out).unwrap();
        let records: Vec<Record> = text.lines().map(|l| parse_line(l).unwrap()).collect();
        let contents: Vec<(&str, Stream)> = records.iter().map(|r| (r.content.as_str(), r.stream)).collect();
        assert_eq!(contents, [
            ("hello", Stream::Stdout),
            ("oops", Stream::Stderr),
            ("world", Stream::Stdout),
            ("end", Stream::Stdout),
        ]);
        assert!(chrono::DateTime::parse_from_rfc3339(&records[0].time).is_ok());
        assert!(text.lines().next().unwrap().contains(" stdout F hello"));
    }

    #[test]
    fn long_lines_are_split_into_partials() {
        let mut writer = CriLogWriter::new(Vec::new());
        writer.write(Stream::Stdout, &vec![b'x'; MAX_LINE + 10]).unwrap();
        writer.write(Stream::Stdout, b"\n").unwrap();
        let text = String::from_utf8(writer.out).unwrap();
        let records: Vec<Record> = text.lines().map(|l| parse_line(l).unwrap()).collect();
        assert_eq!(records.len(), 2);
        assert!(records[0].partial && !records[1].partial);
        let mut out = Vec::new();
        print_log(text.as_bytes(), &mut out, &mut Vec::new()).unwrap();
        assert_eq!(out.len(), MAX_LINE + 10 + 1);
    }
}
