//! gzip, the one copy: a scrape's body as it is rendered, and a push's body at once.
//!
//! Level 1 (`fast`): exposition text is repetitive enough that it already shrinks about
//! 15-fold there, and a higher level costs several times the CPU for a few percent fewer
//! bytes (`docs/performance.md`).

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;

/// The level of every gzip of ours.
pub(crate) const LEVEL: Compression = Compression::fast();

/// `body` gzipped into `room` (emptied first).
#[cfg(feature = "otlp")]
pub(crate) fn gzip<'a>(body: &[u8], room: &'a mut Vec<u8>) -> std::io::Result<&'a [u8]> {
    room.clear();
    let mut encoder = GzEncoder::new(room, LEVEL);
    encoder.write_all(body)?;
    Ok(encoder.finish()?.as_slice())
}

/// Compresses chunks as they come, handing compressed ones of about `chunk` bytes to the
/// next sink.
pub(crate) struct Stream<F: FnMut(Vec<u8>)> {
    encoder: GzEncoder<Vec<u8>>,
    chunk: usize,
    next: F,
}

impl<F: FnMut(Vec<u8>)> Stream<F> {
    pub(crate) fn new(chunk: usize, next: F) -> Self {
        Self {
            encoder: GzEncoder::new(Vec::with_capacity(chunk + chunk / 8), LEVEL),
            chunk,
            next,
        }
    }

    /// Compresses `plain`; gives it back, to be filled again.
    pub(crate) fn write(&mut self, plain: Vec<u8>) -> Vec<u8> {
        // Writing into a `Vec` cannot fail.
        let _ = self.encoder.write_all(&plain);
        let compressed = self.encoder.get_mut();
        if compressed.len() >= self.chunk {
            let full =
                std::mem::replace(compressed, Vec::with_capacity(self.chunk + self.chunk / 8));
            (self.next)(full);
        }
        plain
    }

    /// Ends the stream: the rest, and gzip's trailer.
    pub(crate) fn finish(mut self) {
        if let Ok(rest) = self.encoder.try_finish().map(|()| self.encoder.get_mut()) {
            let rest = std::mem::take(rest);
            if !rest.is_empty() {
                (self.next)(rest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    #[test]
    fn a_stream_reads_back_as_what_was_written() {
        let text: Vec<u8> = (0..50_000)
            .flat_map(|i| format!("requests_total{{user=\"u{i}\"}} {i}\n").into_bytes())
            .collect();
        let mut chunks = Vec::new();
        let mut stream = Stream::new(4096, |c| chunks.push(c));
        for part in text.chunks(10_000) {
            let back = stream.write(part.to_vec());
            assert_eq!(back, part);
        }
        stream.finish();
        assert!(chunks.len() > 2);
        assert_eq!(gunzip(&chunks.concat()), text);
        let mut room = Vec::new();
        assert_eq!(gunzip(gzip(&text, &mut room).expect("gzip")), text);
    }
}
