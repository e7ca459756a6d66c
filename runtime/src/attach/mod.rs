//! Attach: the shim owns the container's stdio and serves it on a unix socket
//! in the container's state directory (`attach.sock`). Any number of clients
//! may be attached; each gets the output written from its attach on (the log
//! file keeps getting everything), and may write the container's stdin when
//! the container was created with one, or resize its terminal.
//!
//! The protocol is a stream of frames, `[channel: u8][length: u32 BE][data]`,
//! with Kubernetes' remotecommand channel numbers, so that the streaming
//! server only re-frames: to the shim 0 stdin, 4 resize (`{"Width":w,"Height":h}`),
//! 255 end of stdin; from the shim 1 stdout, 2 stderr (a terminal's output is
//! stdout). The shim closes the connections when the container has exited
//! and its output is drained.
//!
//! The same socket takes one request that is not attach's: [`REOPEN_LOG`],
//! CRI ReopenContainerLog. A request here rather than a signal to the shim's
//! recorded pid: the shim's poll loop already serves this socket, the caller
//! hears when the new file is in place (the kubelet looks at it right after),
//! and a pid recorded for a shim that has since exited could name another
//! process.

pub mod hub;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const RESIZE: u8 = 4;
pub const CLOSE_STDIN: u8 = 255;
/// To the shim: close the CRI log and open (create) it again at its path, as
/// after the kubelet renamed it away. The shim answers on the same channel:
/// no data when done, else the error.
pub const REOPEN_LOG: u8 = 128;

/// The socket's name in the state directory.
pub const SOCKET: &str = "attach.sock";

/// A frame ready to be written.
pub fn encode(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(5 + data.len());
    frame.push(channel);
    frame.extend_from_slice(&(data.len() as u32).to_be_bytes());
    frame.extend_from_slice(data);
    frame
}

/// Cuts a byte stream, arriving in pieces of any size, into frames.
#[derive(Default)]
pub struct FrameReader {
    buffer: Vec<u8>,
}

/// No frame is this large: a peer that says so is not speaking the protocol.
const MAX_FRAME: usize = 1 << 20;

impl FrameReader {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete frame, `Err` when the stream is not made of frames.
    pub fn next_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, String> {
        let Some(header) = self.buffer.get(..5) else { return Ok(None) };
        let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if length > MAX_FRAME {
            return Err(format!("an attach frame of {length} bytes"));
        }
        if self.buffer.len() < 5 + length {
            return Ok(None);
        }
        let channel = self.buffer[0];
        let data = self.buffer[5..5 + length].to_vec();
        self.buffer.drain(..5 + length);
        Ok(Some((channel, data)))
    }

    /// Bytes received but not yet a whole frame.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }
}

/// Asks the shim at the other end of `stream` to reopen the container's log
/// and waits for its answer (output broadcast meanwhile is skipped).
pub fn reopen_log(mut stream: UnixStream) -> std::io::Result<()> {
    // A shim busy with a slow disk must not hold the caller forever.
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(&encode(REOPEN_LOG, &[]))?;
    let mut frames = FrameReader::default();
    let mut buf = [0u8; 16 * 1024];
    loop {
        while let Some((channel, data)) = frames.next_frame().map_err(std::io::Error::other)? {
            if channel == REOPEN_LOG {
                if data.is_empty() {
                    return Ok(());
                }
                return Err(std::io::Error::other(String::from_utf8_lossy(&data).into_owned()));
            }
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the shim closed the connection (the container ended)"));
        }
        frames.push(&buf[..n]);
    }
}

/// A terminal size as kubectl sends it on the resize channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// A path to `name` in `dir` short enough for a unix socket address (at most
/// 107 bytes; state directories with 64-digit ids can be longer), through the
/// open directory `dir_handle`. Valid while `dir_handle` is open.
pub fn socket_path(dir_handle: &File) -> PathBuf {
    Path::new(&format!("/proc/self/fd/{}", dir_handle.as_raw_fd())).join(SOCKET)
}

/// Opens `dir` so that [`socket_path`] can name the socket in it.
pub fn open_dir(dir: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options().read(true).custom_flags(libc::O_DIRECTORY).open(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_any_split() {
        let stream = [encode(STDOUT, b"hello"), encode(CLOSE_STDIN, b""), encode(STDERR, &[7; 300])].concat();
        for piece in [1, 3, 7, stream.len()] {
            let mut reader = FrameReader::default();
            let mut frames = Vec::new();
            for chunk in stream.chunks(piece) {
                reader.push(chunk);
                while let Some(frame) = reader.next_frame().unwrap() {
                    frames.push(frame);
                }
            }
            assert_eq!(frames, vec![(STDOUT, b"hello".to_vec()), (CLOSE_STDIN, vec![]), (STDERR, vec![7; 300])]);
            assert_eq!(reader.pending(), 0);
        }
    }

    #[test]
    fn an_oversized_frame_is_refused() {
        let mut reader = FrameReader::default();
        reader.push(&[STDIN, 0xff, 0xff, 0xff, 0xff]);
        assert!(reader.next_frame().is_err());
    }

    #[test]
    fn terminal_sizes_read_as_kubectl_sends_them() {
        let size: TerminalSize = serde_json::from_str(r#"{"Width":100,"Height":30}"#).unwrap();
        assert_eq!(size, TerminalSize { width: 100, height: 30 });
    }
}
