//! Typed one-way channels between the processes of a container (caller, shim,
//! init): one JSON message per line over a pipe.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("creating a pipe: {0}")]
    Pipe(nix::Error),
    #[error("channel I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed message on the channel: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("the other side closed the channel")]
    Closed,
}

/// The sending end.
pub struct Sender<T> {
    file: File,
    _message: PhantomData<fn(T)>,
}

/// The receiving end.
pub struct Receiver<T> {
    reader: BufReader<File>,
    _message: PhantomData<fn() -> T>,
}

/// A new channel. Both ends are close-on-exec, so an `execve` closes the sender
/// and the receiver sees the end of the channel.
pub fn channel<T: Serialize + DeserializeOwned>() -> Result<(Sender<T>, Receiver<T>), ChannelError> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(ChannelError::Pipe)?;
    Ok((Sender::from_fd(write), Receiver::from_fd(read)))
}

/// Gives the child that `command` spawns `fd` as descriptor `target`, open
/// across its `execve`. `fd` stays close-on-exec in this process, so children
/// that other threads spawn meanwhile do not keep it open.
pub fn pass_fd(command: &mut Command, fd: &OwnedFd, target: RawFd) {
    let fd = fd.as_raw_fd();
    // SAFETY: dup2 and fcntl are async-signal-safe and touch only descriptors.
    unsafe {
        command.pre_exec(move || {
            // dup2 onto itself would keep the close-on-exec flag.
            let done = if fd == target { libc::fcntl(fd, libc::F_SETFD, 0) } else { libc::dup2(fd, target) };
            if done < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

impl<T: Serialize> Sender<T> {
    pub fn from_fd(fd: OwnedFd) -> Self {
        Self { file: File::from(fd), _message: PhantomData }
    }

    pub fn send(&mut self, message: &T) -> Result<(), ChannelError> {
        let mut line = serde_json::to_vec(message)?;
        line.push(b'\n');
        // One write of a short line to a pipe is atomic, so messages from
        // several writers never interleave.
        self.file.write_all(&line)?;
        Ok(())
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl<T: DeserializeOwned> Receiver<T> {
    pub fn from_fd(fd: OwnedFd) -> Self {
        Self { reader: BufReader::new(File::from(fd)), _message: PhantomData }
    }

    /// The next message; `ChannelError::Closed` when every sender is gone.
    pub fn recv(&mut self) -> Result<T, ChannelError> {
        self.try_recv()?.ok_or(ChannelError::Closed)
    }

    /// The next message, or `None` when every sender is gone.
    pub fn try_recv(&mut self) -> Result<Option<T>, ChannelError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        Ok(Some(serde_json::from_str(&line)?))
    }

    /// The next message if one has arrived, without waiting for one.
    pub fn recv_arrived(&mut self) -> Result<Option<T>, ChannelError> {
        if self.reader.buffer().is_empty() {
            let mut fds = [nix::poll::PollFd::new(self.as_fd(), nix::poll::PollFlags::POLLIN)];
            if nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).map_err(std::io::Error::from)? == 0 {
                return Ok(None);
            }
        }
        self.try_recv()
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.reader.get_ref().as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Message {
        Ready { pid: i32 },
        Failed(String),
    }

    #[test]
    fn messages_arrive_in_order_then_closed() {
        let (mut tx, mut rx) = channel::<Message>().unwrap();
        tx.send(&Message::Ready { pid: 7 }).unwrap();
        tx.send(&Message::Failed("no".into())).unwrap();
        drop(tx);
        assert_eq!(rx.recv().unwrap(), Message::Ready { pid: 7 });
        assert_eq!(rx.recv().unwrap(), Message::Failed("no".into()));
        assert!(matches!(rx.recv(), Err(ChannelError::Closed)));
    }

    /// The shim collects a message that may or may not have been sent, while
    /// the sender still holds the channel open: it must not wait for one.
    #[test]
    fn recv_arrived_takes_what_is_there_and_never_waits() {
        let (mut tx, mut rx) = channel::<Message>().unwrap();
        assert_eq!(rx.recv_arrived().unwrap(), None);
        tx.send(&Message::Ready { pid: 1 }).unwrap();
        tx.send(&Message::Ready { pid: 2 }).unwrap();
        assert_eq!(rx.recv_arrived().unwrap(), Some(Message::Ready { pid: 1 }));
        // The second line already sits in the reader's buffer.
        assert_eq!(rx.recv_arrived().unwrap(), Some(Message::Ready { pid: 2 }));
        assert_eq!(rx.recv_arrived().unwrap(), None);
    }

    /// The child writes into the passed descriptor, whether or not it already
    /// has the target number here.
    #[test]
    fn a_passed_descriptor_reaches_the_child() {
        for same_number in [false, true] {
            let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
            let target = if same_number { write.as_raw_fd() } else { 200 };
            // bash: dash redirects single-digit descriptors only.
            let mut command = Command::new("/bin/bash");
            command.args(["-c", &format!("echo passed >&{target}")]);
            pass_fd(&mut command, &write, target);
            let status = command.status().unwrap();
            drop(write);
            let mut out = String::new();
            std::io::Read::read_to_string(&mut File::from(read), &mut out).unwrap();
            assert!(status.success());
            assert_eq!(out, "passed\n", "same number: {same_number}");
        }
    }
}
