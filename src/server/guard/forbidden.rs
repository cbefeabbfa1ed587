//! The answer to a client outside the allowlist: `403` at once, saying why, without
//! reading its request, and the connection closed; it never takes a slot, and a flood of
//! outsiders keeps a bounded number of sockets open.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// `403` answers to clients outside the allowlist being written at once; past it such a
/// client gets what a fresh socket takes at once, then is closed. Bounds the sockets a
/// flood of outsiders keeps open.
pub(super) const MAX_FORBIDDEN_WRITERS: usize = 64;

/// Most bytes read (and dropped) from a refused client after its answer, so that closing
/// does not reset the connection before the answer is read: a request head's worth.
const DRAIN: usize = 64 * 1024;

/// Longest time spent answering a client outside the allowlist.
const FORBIDDEN_LINGER: Duration = Duration::from_secs(1);

/// The whole answer to `peer`, outside the allowlist: the body says why, so that whoever
/// runs `curl` on the port learns what to change.
pub(super) fn answer(peer: IpAddr) -> Vec<u8> {
    let body = format!(
        "403 Forbidden: {peer} is not in this metrics endpoint's allowlist \
         (porter-metrics Builder::allow)\n"
    );
    format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answers a client outside the allowlist `403` and closes its connection, without waiting
/// for its request; past [`MAX_FORBIDDEN_WRITERS`] answers at once, writes only what the
/// socket takes at once.
pub(super) fn forbid(stream: TcpStream, peer: IpAddr, writers: &Arc<Semaphore>) {
    let answer = answer(peer);
    let Ok(writer) = writers.clone().try_acquire_owned() else {
        // A fresh socket's send buffer is empty: the answer goes out without waiting.
        let _ = stream.try_write(&answer);
        return;
    };
    tokio::spawn(async move {
        let _ = tokio::time::timeout(FORBIDDEN_LINGER, write_and_close(stream, &answer)).await;
        drop(writer);
    });
}

pub(super) async fn write_and_close(mut stream: TcpStream, answer: &[u8]) {
    let mut rest = answer;
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
    let mut budget = DRAIN;
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_answer_says_why_and_its_length_is_right() {
        let answer = super::answer("127.0.0.1".parse().unwrap());
        let text = String::from_utf8(answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(body.contains("127.0.0.1 is not in"), "{body}");
    }
}
