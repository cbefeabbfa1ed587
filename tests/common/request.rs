//! Reading HTTP/1.1 requests off a connection, for the bare receivers of tests and benches
//! (a push's requests: a head, then a `Content-Length` body).
#![allow(dead_code)]

use std::io::BufRead;

/// Reads the next request on `reader` into `body` (its body only); `false` once the
/// connection ends or breaks.
pub fn read_request(reader: &mut impl BufRead, body: &mut Vec<u8>) -> bool {
    let (mut length, mut line) = (0usize, String::new());
    loop {
        line.clear();
        if matches!(reader.read_line(&mut line), Ok(0) | Err(_)) {
            return false;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    body.resize(length, 0);
    reader.read_exact(body).is_ok()
}
