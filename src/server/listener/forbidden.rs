//! The answer to a client outside the allowlist: `403` at once, without reading its
//! request, and the connection closed; it never takes a slot, and a flood of outsiders
//! keeps a bounded number of sockets open.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::MAX_HEAD_BYTES;

/// `403` answers to clients outside the allowlist being written at once; past it such a
/// client is closed without one. Bounds the sockets a flood of outsiders keeps open.
pub(super) const MAX_FORBIDDEN_WRITERS: usize = 64;

/// Longest time spent answering a client outside the allowlist.
pub(super) const FORBIDDEN_LINGER: Duration = Duration::from_secs(1);

/// The whole answer to a client outside the allowlist.
pub(super) const FORBIDDEN: &[u8] =
    b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Answers a client outside the allowlist `403` and closes its connection, without waiting
/// for its request; past [`MAX_FORBIDDEN_WRITERS`] answers at once, just closes it.
pub(super) fn forbid(stream: TcpStream, writers: &Arc<Semaphore>) {
    let Ok(writer) = writers.clone().try_acquire_owned() else {
        // A fresh socket's send buffer is empty: the answer goes out without waiting.
        let _ = stream.try_write(FORBIDDEN);
        return;
    };
    tokio::spawn(async move {
        let _ = tokio::time::timeout(FORBIDDEN_LINGER, answer_forbidden(stream)).await;
        drop(writer);
    });
}

pub(super) async fn answer_forbidden(mut stream: TcpStream) {
    let mut rest = FORBIDDEN;
    while !rest.is_empty() {
        if stream.writable().await.is_err() {
            return;
        }
        match stream.try_write(rest) {
            Ok(written) => rest = rest.get(written..).unwrap_or_default(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
    // The end of the answer; then read what the client sent until it closes: closing with
    // unread bytes would send a reset, which can destroy the answer before it is read.
    let _ = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_shutdown(cx)).await;
    let mut sink = [0u8; 4096];
    let mut budget = MAX_HEAD_BYTES;
    while budget > 0 {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut sink) {
            Ok(0) => return,
            Ok(read) => budget = budget.saturating_sub(read),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}
