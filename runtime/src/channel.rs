//! Typed one-way channels between the processes of a container (caller, shim,
//! init): one JSON message per line over a pipe.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

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
}
