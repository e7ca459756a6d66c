//! The shim's side of attach: a listening socket and its clients, driven by
//! the shim's poll loop. Nothing here blocks: a client that reads too slowly
//! is dropped (its output stays in the log), stdin that the container does
//! not read yet waits in a bounded buffer and holds back the clients.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{PollFd, PollFlags};

use super::{encode, open_dir, socket_path, FrameReader, TerminalSize, CLOSE_STDIN, REOPEN_LOG, RESIZE, STDIN};

/// Output queued for one client beyond this means it does not keep up.
const MAX_BACKLOG: usize = 4 << 20;
/// Stdin waiting for the container beyond this stops reading from clients.
const MAX_STDIN_PENDING: usize = 64 << 10;

/// The container's stdin as the shim holds it.
pub struct Stdin {
    /// A pipe's write end, or the terminal's master.
    pub file: File,
    /// Closed for good when the first client that wrote to it is done
    /// (Kubernetes' `stdinOnce`).
    pub once: bool,
}

struct OpenStdin {
    file: File,
    once: bool,
    pending: Vec<u8>,
    /// Close once `pending` is written.
    closing: bool,
}

struct Client {
    stream: UnixStream,
    frames: FrameReader,
    outgoing: Vec<u8>,
    wrote_stdin: bool,
}

pub struct Hub {
    dir: File,
    listener: UnixListener,
    clients: Vec<Client>,
    stdin: Option<OpenStdin>,
    terminal: Option<OwnedFd>,
}

fn set_nonblocking(fd: &impl AsFd) -> std::io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Writes as much of `buffer` as `out` takes now; `Err` when `out` is gone.
fn write_some(out: &mut impl Write, buffer: &mut Vec<u8>) -> std::io::Result<()> {
    while !buffer.is_empty() {
        match out.write(buffer) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => {
                buffer.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Hub {
    /// Listens on `attach.sock` in `state_dir`.
    pub fn bind(state_dir: &std::path::Path, stdin: Option<Stdin>, terminal: Option<OwnedFd>) -> std::io::Result<Self> {
        let dir = open_dir(state_dir)?;
        let listener = UnixListener::bind(socket_path(&dir))?;
        listener.set_nonblocking(true)?;
        let stdin = match stdin {
            Some(Stdin { file, once }) => {
                set_nonblocking(&file)?;
                Some(OpenStdin { file, once, pending: Vec::new(), closing: false })
            }
            None => None,
        };
        Ok(Self { dir, listener, clients: Vec::new(), stdin, terminal })
    }

    /// What to poll, in this order: the listener, each client, the stdin
    /// (when it has pending input). [`Hub::ready`] takes the results in the
    /// same order.
    pub fn poll_fds(&self) -> Vec<PollFd<'_>> {
        let accept_input = self.stdin.as_ref().is_none_or(|s| s.pending.len() < MAX_STDIN_PENDING);
        let mut fds = vec![PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
        for client in &self.clients {
            let mut flags = PollFlags::empty();
            if accept_input {
                flags |= PollFlags::POLLIN;
            }
            if !client.outgoing.is_empty() {
                flags |= PollFlags::POLLOUT;
            }
            fds.push(PollFd::new(client.stream.as_fd(), flags));
        }
        if let Some(stdin) = self.stdin.as_ref().filter(|s| !s.pending.is_empty()) {
            fds.push(PollFd::new(stdin.file.as_fd(), PollFlags::POLLOUT));
        }
        fds
    }

    /// Handles what poll reported for [`Hub::poll_fds`]; `reopen_log`
    /// serves a client's [`REOPEN_LOG`] (the hub does not own the log).
    pub fn ready(&mut self, revents: &[PollFlags], reopen_log: &mut dyn FnMut() -> std::io::Result<()>) {
        let Some((listener, rest)) = revents.split_first() else { return };
        let (clients, stdin) = rest.split_at(self.clients.len().min(rest.len()));
        if stdin.first().is_some_and(|r| !r.is_empty()) {
            self.flush_stdin();
        }
        let mut gone = Vec::new();
        for (i, events) in clients.iter().enumerate() {
            if events.is_empty() {
                continue;
            }
            let alive = self.serve(i, events.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR), reopen_log);
            if !alive {
                gone.push(i);
            }
        }
        for i in gone.into_iter().rev() {
            let client = self.clients.remove(i);
            if client.wrote_stdin {
                self.end_stdin();
            }
        }
        if !listener.is_empty() {
            while let Ok((stream, _)) = self.listener.accept() {
                if stream.set_nonblocking(true).is_ok() {
                    self.clients.push(Client { stream, frames: FrameReader::default(), outgoing: Vec::new(), wrote_stdin: false });
                }
            }
        }
    }

    /// Reads and writes what client `i` has; false when it is gone.
    fn serve(&mut self, i: usize, readable: bool, reopen_log: &mut dyn FnMut() -> std::io::Result<()>) -> bool {
        let mut buf = [0u8; 16 * 1024];
        if readable {
            loop {
                match self.clients[i].stream.read(&mut buf) {
                    Ok(0) => return false,
                    Ok(n) => self.clients[i].frames.push(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
            loop {
                match self.clients[i].frames.next_frame() {
                    Ok(Some((channel, data))) => self.handle(i, channel, &data, reopen_log),
                    Ok(None) => break,
                    Err(_) => return false,
                }
            }
        }
        let client = &mut self.clients[i];
        write_some(&mut client.stream, &mut client.outgoing).is_ok()
    }

    fn handle(&mut self, client: usize, channel: u8, data: &[u8], reopen_log: &mut dyn FnMut() -> std::io::Result<()>) {
        match channel {
            STDIN => {
                if let Some(stdin) = self.stdin.as_mut().filter(|s| !s.closing) {
                    stdin.pending.extend_from_slice(data);
                    self.clients[client].wrote_stdin = true;
                    self.flush_stdin();
                }
            }
            RESIZE => {
                if let (Some(terminal), Ok(size)) = (&self.terminal, serde_json::from_slice::<TerminalSize>(data)) {
                    let size = libc::winsize { ws_row: size.height, ws_col: size.width, ws_xpixel: 0, ws_ypixel: 0 };
                    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
                    unsafe { libc::ioctl(terminal.as_raw_fd(), libc::TIOCSWINSZ, &size) };
                }
            }
            CLOSE_STDIN => self.end_stdin(),
            REOPEN_LOG => {
                let answer = reopen_log().err().map(|e| e.to_string()).unwrap_or_default();
                self.clients[client].outgoing.extend_from_slice(&encode(REOPEN_LOG, answer.as_bytes()));
            }
            _ => {}
        }
    }

    /// A client is done with stdin: with `stdinOnce` the container gets its
    /// end once what was sent is written; otherwise stdin stays open for the
    /// next client.
    fn end_stdin(&mut self) {
        if let Some(stdin) = self.stdin.as_mut().filter(|s| s.once) {
            stdin.closing = true;
            self.flush_stdin();
        }
    }

    fn flush_stdin(&mut self) {
        let Some(stdin) = self.stdin.as_mut() else { return };
        let broken = write_some(&mut stdin.file, &mut stdin.pending).is_err();
        if broken || (stdin.closing && stdin.pending.is_empty()) {
            self.stdin = None;
        }
    }

    /// Sends output to every client; drops those too far behind.
    pub fn broadcast(&mut self, channel: u8, data: &[u8]) {
        let frame = encode(channel, data);
        self.clients.retain_mut(|client| {
            client.outgoing.extend_from_slice(&frame);
            write_some(&mut client.stream, &mut client.outgoing).is_ok() && client.outgoing.len() <= MAX_BACKLOG
        });
    }

    /// The container is gone: gives every client the rest of its output
    /// (waiting a little for slow ones), then closes the connections and
    /// removes the socket.
    pub fn finish(mut self) {
        for client in &mut self.clients {
            let _ = client.stream.set_nonblocking(false);
            let _ = client.stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = client.stream.write_all(&client.outgoing);
        }
        let _ = std::fs::remove_file(socket_path(&self.dir));
        self.clients.clear();
    }
}
