//! The listening side of the raft port: reads request frames from each
//! connection, handles each in its own task (so a slow snapshot does not hold up
//! heartbeats) and writes the answers back as they are ready.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::connection::write_frames;
use super::frame;
use super::node::Node;
use super::rpc::{RequestFrame, ResponseFrame};

pub async fn serve(listener: TcpListener, node: Arc<Node>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tracing::debug!(%peer, "raft connection accepted");
                tokio::spawn(serve_connection(stream, node.clone()));
            }
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!("accepting a raft connection failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, node: Arc<Node>) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!("cannot set TCP_NODELAY: {e}");
    }
    let (mut reader, writer) = stream.into_split();
    let (answers, frames) = mpsc::unbounded_channel();
    tokio::spawn(write_frames(frames, writer));
    let mut buf = Vec::new();
    loop {
        let RequestFrame { id, request } = match frame::read(&mut reader, &mut buf).await {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("dropping a raft connection after a bad frame: {e}");
                return;
            }
        };
        let node = node.clone();
        let answers = answers.clone();
        tokio::spawn(async move {
            let response = node.handle(request).await;
            let mut bytes = Vec::new();
            match frame::encode(&mut bytes, &ResponseFrame { id, response }) {
                Ok(()) => {
                    let _ = answers.send(bytes);
                }
                Err(e) => tracing::error!("cannot encode an answer: {e}"),
            }
        });
    }
}
