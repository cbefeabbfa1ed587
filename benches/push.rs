//! What a push costs beside a scrape of the same store: 100 000 counter series, then 100 000
//! histogram series (11 buckets), each labelled `user`, `method`.
//!
//! Per case, the median of 11 runs of:
//! * **text + gzip**: the text exposition, gzipped as the listener gzips it (fast level):
//!   what a scrape with `Accept-Encoding: gzip` costs the process;
//! * **remote-write 2.0 + snappy**, **remote-write 1.0 + snappy** (for reference) and
//!   **otlp + gzip**: the body a push sends, encoded
//!   from the store and compressed (`testing::PushEncoder`, the push loop's own code with
//!   its buffers reused from push to push, without the HTTP exchange).
//!
//! It prints each one's CPU time (ms, one thread), its body's bytes, both as ratios to
//! text + gzip (targets: Remote-Write 2.0 at most 0.5 of both; OTLP at most 2.0 of the
//! time), and the heap a push holds at its peak beyond the store, per series (here the
//! whole store in one body, as `testing::push_body` gives it).
//!
//! Then whole pushes, as a `Pusher` sends them, of 1 000 000 counter series to a receiver
//! on loopback that takes every request (answering as a Remote-Write 2.0 receiver or an
//! OTLP one would): `stop()`'s final push and its stale markers, each a walk of every
//! series cut into requests of at most 10 000 samples, two in flight. It prints the time
//! of both (the target: each push within the default interval, 10 s, on a 2-core machine),
//! the requests, and the peak heap beyond the store per series (bounded by the requests in
//! flight, not by the store).
//!
//! Run with `cargo bench --bench push`. Without `--bench` (as `cargo test --benches` runs
//! it) it checks the same paths once on 1 000 series.
//!
//! Measured on the 2-core machine of the 0.5 work, shared (load average 12):
//!
//! | 1 000 000 counters | `stop()`: final push + stale markers | requests | peak heap per series |
//! |---|---|---|---|
//! | Remote-Write 2.0 | 1.24 s | 202 | 2.6 B |
//! | OTLP | 1.12 s | 202 | 4.2 B |
//!
//! Each of the two pushes is a walk of every series cut into 101 requests: a push of a
//! million series takes well under the default interval (10 s), and holds a few requests at
//! once (a whole-store body held 23 B per series for Remote-Write 2.0, above).

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use porter_metrics::testing::PushEncoder;
use porter_metrics::{Builder, Collector, Limits, LocalRecorder, PushTarget};

#[path = "../tests/common/counting.rs"]
mod counting;
#[path = "../tests/common/request.rs"]
mod request;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];

fn recorder(n: usize, histograms: bool) -> LocalRecorder {
    let recorder = Builder::new().limits(Limits::unlimited()).build_local();
    let collector = recorder.collector();
    for i in 0..n {
        let user = format!("u{i}");
        let labels = ["user", user.as_str(), "method", METHODS[i % METHODS.len()]];
        if histograms {
            collector.record_histogram("push_request_seconds", (i % 1000) as f64 / 100.0, &labels);
        } else {
            collector.increment_counter("push_requests_total", &labels);
        }
    }
    recorder
}

fn text_gzip(recorder: &LocalRecorder) -> Vec<u8> {
    let text = recorder.render();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(text.as_bytes()).expect("gzip");
    gzip.finish().expect("gzip")
}

/// The median time (ms) of `runs` calls of `f`, the size of its output, and the peak heap
/// it held beyond what was in use before (bytes).
fn measure(runs: usize, f: &mut dyn FnMut() -> Vec<u8>) -> (f64, usize, i64) {
    let size = f().len(); // warm-up
    let before = counting::live();
    counting::reset_peak();
    std::hint::black_box(f());
    let peak = counting::peak() - before;
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], size, peak)
}

/// A receiver on loopback that reads every request whole and answers `204` as a
/// Remote-Write 2.0 receiver that wrote everything (an OTLP client takes it as a success);
/// the requests it took.
fn sink() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let taken = Arc::new(AtomicUsize::new(0));
    let counted = taken.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let counted = counted.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut body = Vec::new();
                loop {
                    if !request::read_request(&mut reader, &mut body) {
                        return;
                    }
                    counted.fetch_add(1, Ordering::Relaxed);
                    let written = "x-prometheus-remote-write-samples-written: 1000000000\r\nx-prometheus-remote-write-histograms-written: 1000000000\r\n";
                    let answer = format!("HTTP/1.1 204 No Content\r\n{written}\r\n");
                    if reader.get_mut().write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, taken)
}

/// `stop()` of a pusher of `n` counter series to `target`: its time (s), the requests it
/// sent, and its peak heap beyond what was in use before (bytes).
fn whole_push(n: usize, target: PushTarget) -> (f64, usize, i64, Arc<AtomicUsize>) {
    let (addr, taken) = sink();
    let url = target.url().replace("127.0.0.1:9", &addr.to_string());
    let target = match target.url().contains("/v1/metrics") {
        true => PushTarget::otlp(&url),
        false => PushTarget::remote_write(&url),
    }
    .and_then(|t| t.interval(Duration::from_secs(3600)))
    .and_then(|t| t.timeout(Duration::from_secs(600)))
    .expect("valid target");
    let pusher = Builder::new()
        .standalone()
        .limits(Limits::unlimited())
        .push(target)
        .build_pusher()
        .expect("a pusher");
    pusher.start().expect("starts");
    let collector = pusher.collector();
    for i in 0..n {
        let user = format!("u{i}");
        let labels = ["user", user.as_str(), "method", METHODS[i % METHODS.len()]];
        collector.increment_counter("push_requests_total", &labels);
    }
    let before = counting::live();
    counting::reset_peak();
    let start = Instant::now();
    pusher
        .stop()
        .expect("the final push and its stale markers arrive");
    let seconds = start.elapsed().as_secs_f64();
    let requests = taken.load(Ordering::Relaxed);
    (seconds, requests, counting::peak() - before, taken)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (n, runs) = if bench { (100_000, 11) } else { (1_000, 1) };
    let rw = PushTarget::remote_write("http://127.0.0.1:9/api/v1/write").expect("valid");
    let otlp = PushTarget::otlp("http://127.0.0.1:9/v1/metrics").expect("valid");
    let rw1 = rw.clone().remote_write_v1();
    println!(
        "{:<9} {:<22} {:>9} {:>6} {:>11} {:>6} {:>12}",
        "series", "body", "median ms", "x text", "bytes", "x text", "peak B/series"
    );
    for histograms in [false, true] {
        let recorder = recorder(n, histograms);
        let kind = if histograms { "histogram" } else { "counter" };
        let (mut rw, mut rw1, mut otlp) = (
            PushEncoder::new(&recorder, &rw),
            PushEncoder::new(&recorder, &rw1),
            PushEncoder::new(&recorder, &otlp),
        );
        let cases: [(&str, &mut dyn FnMut() -> Vec<u8>); 4] = [
            ("text + gzip (scrape)", &mut || text_gzip(&recorder)),
            ("remote-write 2 + snappy", &mut || {
                rw.body().expect("encodes")
            }),
            ("remote-write 1 + snappy", &mut || {
                rw1.body().expect("encodes")
            }),
            ("otlp + gzip", &mut || otlp.body().expect("encodes")),
        ];
        let mut text = (0.0, 0);
        for (name, f) in cases {
            let (ms, bytes, peak) = measure(runs, f);
            if text.1 == 0 {
                text = (ms, bytes);
            }
            println!(
                "{kind:<9} {name:<22} {ms:>9.1} {:>6.2} {bytes:>11} {:>6.2} {:>12.0}",
                ms / text.0,
                bytes as f64 / text.1 as f64,
                peak as f64 / n as f64
            );
        }
    }
    let whole = if bench { 1_000_000 } else { 1_000 };
    println!();
    println!(
        "{:<9} {:<22} {:>12} {:>9} {:>14}",
        "series", "stop(): 2 pushes", "seconds", "requests", "peak B/series"
    );
    for (name, target) in [("remote-write 2", &rw), ("otlp", &otlp)] {
        let (seconds, requests, peak, _) = whole_push(whole, target.clone());
        println!(
            "{whole:<9} {name:<22} {seconds:>12.2} {requests:>9} {:>14.1}",
            peak as f64 / whole as f64
        );
    }
}
