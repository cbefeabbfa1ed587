//! The figures at 100 000 series: memory per series, full scrape time and idle CPU,
//! ours against `prometheus-client` 0.26 and `measured` 0.0.25 (interned label values), in
//! one run.
//!
//! Run with `cargo bench --bench scale` (plain `main`, no criterion). One family
//! `NAME{user="u<i>",method="GET"}` holds N = 100 000 series, each recorded 3 times (N calls
//! per round, 3 rounds); limits are raised (`Limits::unlimited()`) so nothing folds. Once
//! for counters (`scale_requests_total`), once for histograms (`scale_request_seconds`,
//! Prometheus' 11 default buckets in every library):
//!
//! * **heap bytes per series**: live heap bytes added (the counting allocator of
//!   `tests/common/counting.rs`, all threads), measured at the end of recording on the
//!   recording thread, a fresh thread per case (so our per-thread lookup cache is counted,
//!   and no case inherits another's). The user values are built once, before any case;
//!   each library copies what it keeps. Ours: `LocalRecorder::collector()`;
//!   prometheus-client: `Family<Vec<(String, String)>, Counter | Histogram>`; measured:
//!   `CounterVec` / `HistogramVec` over a `#[derive(LabelGroup)]` with both label values
//!   interned in a `lasso::ThreadedRodeo` (`dynamic_with`);
//! * **full scrape**: ours is a real scrape, `GET /metrics` over HTTP/1.0 (no gzip) from a
//!   plain blocking `TcpStream`, connect to last byte, of a standalone `MetricsServer` on
//!   127.0.0.1 (port 0) recorded through `server.collector()`; prometheus-client: its text
//!   `encode` into a `String`; measured: `collect_group_into` a `BufferedTextEncoder` and
//!   `finish`. Medians of `REPS` runs. Our in-process `render()` is shown beside (info).
//!   Targets: ours / prometheus-client at most 0.3 for both (issue 31);
//! * **idle CPU**: a standalone running `MetricsServer` holding N histogram series, then
//!   this process's CPU time (user + sys, `getrusage`) over `IDLE` of doing nothing, in % of
//!   one core: once with no idle timeout (no upkeep thread at all), once with
//!   `idle_timeout(600 s)` (an upkeep thread scanning every min(5 s, idle / 8) = 5 s: a 3 s
//!   window sees zero or one scan). The cost of one scan of the N series
//!   (`LocalRecorder::run_upkeep` on the server's pipeline) is timed too, and what it costs
//!   at one scan every 5 s.
//!
//! The counting allocator is on for every case, timings included: each allocation costs two
//! relaxed atomic adds, in every library alike.
//!
//! Without `--bench` (e.g. `cargo test --benches`) it runs with N = 1 000, 3 scrapes and a
//! 0.1 s idle window.

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use measured::text::BufferedTextEncoder;
use measured::MetricGroup;
use porter_metrics::{Builder, Collector, Limits, LocalRecorder, MetricsServer, DEFAULT_BUCKETS};
use prometheus_client::metrics::counter::Counter as ClientCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram as ClientHistogram;
use prometheus_client::registry::Registry;

#[path = "../tests/common/counting.rs"]
mod counting;
#[path = "support/measured.rs"]
mod peer_measured;

use peer_measured::{MeasuredCounters, MeasuredHistograms, Scale, BUCKETS};

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

/// Times each series is recorded.
const ROUNDS: usize = 3;
/// Counter family (ours and measured write the name as is; prometheus-client adds `_total`).
const COUNTER: &str = "scale_requests_total";
const CLIENT_COUNTER: &str = "scale_requests";
const HISTOGRAM: &str = "scale_request_seconds";
type ClientCounters = Family<Vec<(String, String)>, ClientCounter>;
type ClientHistograms = Family<Vec<(String, String)>, ClientHistogram, fn() -> ClientHistogram>;

fn client_histogram() -> ClientHistogram {
    ClientHistogram::new(DEFAULT_BUCKETS)
}

/// The run's sizes.
struct Plan {
    n: usize,
    reps: usize,
    idle: Duration,
}

/// The user label values, built once before any case.
struct Users(Vec<String>);

impl Users {
    fn new(n: usize) -> Self {
        Self((0..n).map(|i| format!("u{i}")).collect())
    }

    /// Calls `f(i, value)` for every series, `ROUNDS` times over.
    fn each(&self, mut f: impl FnMut(&str, f64)) {
        for round in 0..ROUNDS {
            for (i, user) in self.0.iter().enumerate() {
                f(user, value(i * ROUNDS + round));
            }
        }
    }
}

/// An observation value: varies over the bucket range.
fn value(k: usize) -> f64 {
    0.001 * (k % 2_000 + 1) as f64
}

/// prometheus-client's owned label set of `user`.
fn owned(user: &str) -> Vec<(String, String)> {
    vec![
        ("user".to_owned(), user.to_owned()),
        ("method".to_owned(), "GET".to_owned()),
    ]
}

// ---------------------------------------------------------------------------------------
// Memory.

/// Recording threads of the memory cases, as tokio workers on hosts of some sizes.
const THREADS: [usize; 3] = [1, 8, 16];

/// Resident bytes of this process (`/proc/self/statm`), if readable.
fn resident() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The bytes `make` and then `threads` long-lived threads, each recording every series
/// `ROUNDS` times through `record`, added: live heap (the counting allocator) and resident
/// memory, read while the threads are still alive (so their caches count).
fn added<T: Sync>(
    threads: usize,
    make: impl FnOnce() -> T,
    record: impl Fn(&T) + Sync,
) -> (i64, Option<i64>) {
    let (heap, rss) = (counting::live(), resident());
    let made = make();
    let (recorded, release) = (Barrier::new(threads + 1), Barrier::new(threads + 1));
    let out = std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                record(&made);
                recorded.wait();
                release.wait();
            });
        }
        recorded.wait();
        let out = (
            counting::live() - heap,
            resident().zip(rss).map(|(now, was)| now - was),
        );
        release.wait();
        out
    });
    drop(black_box(made));
    out
}

fn unlimited_local() -> LocalRecorder {
    Builder::new().limits(Limits::unlimited()).build_local()
}

/// One memory case: library 0 (ours), 1 (prometheus-client) or 2 (measured), counters
/// (`histograms` false) or histograms, with `threads` recording threads.
fn memory_case(
    users: &Users,
    library: usize,
    histograms: bool,
    threads: usize,
) -> (i64, Option<i64>) {
    fn labels(user: &str) -> [&str; 4] {
        ["user", user, "method", "GET"]
    }
    match (library, histograms) {
        (0, false) => added(threads, unlimited_local, |local| {
            let collector = local.collector();
            users.each(|user, _| collector.increment_counter(COUNTER, &labels(user)));
        }),
        (0, true) => added(threads, unlimited_local, |local| {
            let collector = local.collector();
            users.each(|user, v| collector.record_histogram(HISTOGRAM, v, &labels(user)));
        }),
        (1, false) => added(threads, ClientCounters::default, |family| {
            users.each(|user, _| {
                family.get_or_create(&owned(user)).inc();
            });
        }),
        (1, true) => added(
            threads,
            || ClientHistograms::new_with_constructor(client_histogram),
            |family| {
                users.each(|user, v| family.get_or_create(&owned(user)).observe(v));
            },
        ),
        (_, false) => added(threads, MeasuredCounters::new, |group| {
            users.each(|user, _| {
                group.scale_requests_total.inc(Scale {
                    user,
                    method: "GET",
                })
            });
        }),
        (_, true) => added(threads, MeasuredHistograms::new, |group| {
            users.each(|user, v| {
                group.scale_request_seconds.observe(
                    Scale {
                        user,
                        method: "GET",
                    },
                    v,
                )
            });
        }),
    }
}

/// Bytes per series of every case, `[kind][threads][library]`: heap measured here; resident
/// memory measured by running each case in a process of its own (`--memory-case`), where
/// nothing another case freed is reused.
/// Bytes per series, heap and resident: `[counters, histograms][threads][library]`.
type Memory = [[[(f64, Option<f64>); 3]; 3]; 2];

fn memory(users: &Users) -> Memory {
    // Warm-up: one-time allocations (thread-locals, lazy statics) of each library.
    for library in 0..3 {
        memory_case(&Users::new(10), library, false, 1);
    }
    let n = users.0.len() as f64;
    let mut out = [[[(0.0, None); 3]; 3]; 2];
    for (kind, table) in out.iter_mut().enumerate() {
        for (t, row) in table.iter_mut().enumerate() {
            for (library, cell) in row.iter_mut().enumerate() {
                let (heap, _) = memory_case(users, library, kind == 1, THREADS[t]);
                let rss = std::process::Command::new(std::env::current_exe().expect("this bench"))
                    .args([
                        "--memory-case",
                        &library.to_string(),
                        &kind.to_string(),
                        &THREADS[t].to_string(),
                        &users.0.len().to_string(),
                    ])
                    .output()
                    .ok()
                    .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse::<f64>().ok());
                *cell = (heap as f64 / n, rss.map(|r| r / n));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Scrape time.

/// The median of `reps` timings of `f` in ms, and the size `f` returned.
fn median_ms(reps: usize, mut f: impl FnMut() -> usize) -> (f64, usize) {
    let mut size = 0;
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            size = black_box(f());
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], size)
}

/// One `GET /metrics` over HTTP/1.0, no gzip, read to the end into a buffer of `capacity`
/// (the previous response's size: the client's buffer growth is not the server's time):
/// the response's bytes.
fn http_get(addr: SocketAddr, capacity: usize) -> usize {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("request");
    let mut response = Vec::with_capacity(capacity + 4096);
    stream.read_to_end(&mut response).expect("response");
    assert!(
        response.starts_with(b"HTTP/1.0 200") || response.starts_with(b"HTTP/1.1 200"),
        "scrape failed: {}",
        String::from_utf8_lossy(&response[..response.len().min(200)])
    );
    response.len()
}

/// Sample lines of `family` (with labels) in an exposition.
fn samples(text: &str, family: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
        .count()
}

fn standalone(idle: Option<Duration>) -> MetricsServer {
    let builder = Builder::new().standalone().limits(Limits::unlimited());
    let builder = match idle {
        Some(idle) => builder.idle_timeout(idle),
        None => builder,
    };
    let server = builder.build("127.0.0.1:0");
    server.start().expect("start the standalone server");
    server
}

/// Scrape times in ms for one kind: (ours over HTTP, ours render in process,
/// prometheus-client, measured), and the bytes of each exposition.
struct Scrape {
    ms: [f64; 4],
    bytes: [usize; 4],
}

fn scrape_counters(users: &Users, plan: &Plan) -> Scrape {
    let server = standalone(None);
    let collector = server.collector();
    users.each(|user, _| collector.increment_counter(COUNTER, &["user", user, "method", "GET"]));
    let addr = server.local_addr().expect("running");
    let recorder = server.recorder().expect("standalone");
    assert_eq!(samples(&recorder.render(), COUNTER), users.0.len());
    let size = http_get(addr, 0);
    let ours = median_ms(plan.reps, || http_get(addr, size));
    let ours_render = median_ms(plan.reps, || recorder.render().len());
    server.stop().expect("stop");
    drop((recorder, server));

    let family = ClientCounters::default();
    users.each(|user, _| {
        family.get_or_create(&owned(user)).inc();
    });
    let mut registry = Registry::default();
    registry.register(CLIENT_COUNTER, "Requests", family);
    let encode = || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        text
    };
    assert_eq!(samples(&encode(), COUNTER), users.0.len());
    let client = median_ms(plan.reps, || encode().len());
    drop(registry);

    let group = MeasuredCounters::new();
    users.each(|user, _| {
        group.scale_requests_total.inc(Scale {
            user,
            method: "GET",
        })
    });
    let mut encoder = BufferedTextEncoder::new();
    let mut encode = || {
        group.collect_group_into(&mut encoder).expect("encode");
        encoder.finish()
    };
    let text = encode();
    assert_eq!(
        samples(std::str::from_utf8(&text).expect("utf-8"), COUNTER),
        users.0.len()
    );
    let measured = median_ms(plan.reps, || encode().len());
    Scrape {
        ms: [ours.0, ours_render.0, client.0, measured.0],
        bytes: [ours.1, ours_render.1, client.1, measured.1],
    }
}

fn scrape_histograms(users: &Users, plan: &Plan) -> Scrape {
    let server = standalone(None);
    let collector = server.collector();
    users
        .each(|user, v| collector.record_histogram(HISTOGRAM, v, &["user", user, "method", "GET"]));
    let addr = server.local_addr().expect("running");
    let recorder = server.recorder().expect("standalone");
    let bucket = format!("{HISTOGRAM}_bucket");
    let buckets = users.0.len() * (BUCKETS + 1);
    assert_eq!(samples(&recorder.render(), &bucket), buckets);
    let size = http_get(addr, 0);
    let ours = median_ms(plan.reps, || http_get(addr, size));
    let ours_render = median_ms(plan.reps, || recorder.render().len());
    server.stop().expect("stop");
    drop((recorder, server));

    let family = ClientHistograms::new_with_constructor(client_histogram);
    users.each(|user, v| family.get_or_create(&owned(user)).observe(v));
    let mut registry = Registry::default();
    registry.register(HISTOGRAM, "Request latency", family);
    let encode = || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        text
    };
    assert_eq!(samples(&encode(), &bucket), buckets);
    let client = median_ms(plan.reps, || encode().len());
    drop(registry);

    let group = MeasuredHistograms::new();
    users.each(|user, v| {
        group.scale_request_seconds.observe(
            Scale {
                user,
                method: "GET",
            },
            v,
        )
    });
    let mut encoder = BufferedTextEncoder::new();
    let mut encode = || {
        group.collect_group_into(&mut encoder).expect("encode");
        encoder.finish()
    };
    let text = encode();
    assert_eq!(
        samples(std::str::from_utf8(&text).expect("utf-8"), &bucket),
        buckets
    );
    let measured = median_ms(plan.reps, || encode().len());
    Scrape {
        ms: [ours.0, ours_render.0, client.0, measured.0],
        bytes: [ours.1, ours_render.1, client.1, measured.1],
    }
}

// ---------------------------------------------------------------------------------------
// Idle CPU.

/// This process's CPU time so far, user + system.
#[cfg(unix)]
fn cpu_time() -> Option<Duration> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: `getrusage` fills the `rusage` it is given and touches nothing else; it is
    // read only when the call succeeded.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return None;
        }
        usage.assume_init()
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Some(Duration::from_micros(
        micros(usage.ru_utime) + micros(usage.ru_stime),
    ))
}

#[cfg(not(unix))]
fn cpu_time() -> Option<Duration> {
    None
}

/// Idle CPU in % of one core over `plan.idle`, with and without an idle timeout: ours
/// holding N histogram series in a running standalone server. Also returns one upkeep
/// scan's time in ms.
struct Idle {
    percent: [Option<f64>; 2],
    scan_ms: f64,
}

fn idle_cpu(users: &Users, plan: &Plan) -> Idle {
    let mut percent = [None, None];
    let mut scan_ms = 0.0;
    for (slot, idle) in [None, Some(Duration::from_secs(600))]
        .into_iter()
        .enumerate()
    {
        let server = standalone(idle);
        let collector = server.collector();
        users.each(|user, v| {
            collector.record_histogram(HISTOGRAM, v, &["user", user, "method", "GET"])
        });
        http_get(server.local_addr().expect("running"), 0); // one scrape: a server in use
        std::thread::sleep(Duration::from_millis(100)); // settle
        let (wall, cpu) = (Instant::now(), cpu_time());
        std::thread::sleep(plan.idle);
        let (wall, used) = (wall.elapsed(), cpu_time());
        percent[slot] = match (cpu, used) {
            (Some(before), Some(after)) => {
                Some(100.0 * (after - before).as_secs_f64() / wall.as_secs_f64())
            }
            _ => None,
        };
        if idle.is_some() {
            let recorder = server.recorder().expect("standalone");
            scan_ms = median_ms(plan.reps, || {
                recorder.run_upkeep();
                0
            })
            .0;
        }
        server.stop().expect("stop");
    }
    Idle { percent, scan_ms }
}

// ---------------------------------------------------------------------------------------
// The table.

fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}", a / b)
}

fn verdict(r: f64, target: f64) -> String {
    format!(
        "{r:.2} (target <= {target}) {}",
        if r <= target { "PASS" } else { "FAIL" }
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--memory-case") {
        // One case in a process of its own: print its resident bytes.
        let arg = |i: usize| {
            args.get(at + i)
                .and_then(|a| a.parse::<usize>().ok())
                .unwrap_or(1)
        };
        let (_, rss) = memory_case(&Users::new(arg(4)), arg(1), arg(2) == 1, arg(3));
        println!("{}", rss.unwrap_or(0));
        return;
    }
    let benching = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let plan = if benching {
        Plan {
            n: 100_000,
            reps: 10,
            idle: Duration::from_secs(3),
        }
    } else {
        Plan {
            n: 1_000,
            reps: 3,
            idle: Duration::from_millis(100),
        }
    };
    let users = Users::new(plan.n);
    let n = plan.n;

    let memory = memory(&users);
    let scrape_c = scrape_counters(&users, &plan);
    let scrape_h = scrape_histograms(&users, &plan);
    let idle = idle_cpu(&users, &plan);

    println!();
    println!(
        "=== scale: one family, {n} series {{user=\"u<i>\",method=\"GET\"}}, each recorded {ROUNDS} times ==="
    );
    println!();
    println!("| bytes per series: heap (resident) | threads | ours | prometheus-client | measured (lasso) | ours / prometheus-client | ours / measured |");
    println!("|---|---|---|---|---|---|---|");
    let cell = |(heap, rss): (f64, Option<f64>)| match rss {
        Some(rss) => format!("{heap:.0} ({rss:.0})"),
        None => format!("{heap:.0}"),
    };
    for (kind, table) in ["counter", "histogram"].iter().zip(memory) {
        for (threads, [ours, client, measured]) in THREADS.iter().zip(table) {
            println!(
                "| {kind} | {threads} | {} | {} | {} | {} | {} |",
                cell(ours),
                cell(client),
                cell(measured),
                ratio(ours.0, client.0),
                ratio(ours.0, measured.0)
            );
        }
    }
    println!();
    println!("| full scrape, ms (median of {}) | ours, HTTP GET | ours, render() in process | prometheus-client encode | measured encode | ours / prometheus-client | ours / measured |", plan.reps);
    println!("|---|---|---|---|---|---|---|");
    for (kind, s, target) in [("counter", &scrape_c, 0.3), ("histogram", &scrape_h, 0.3)] {
        let [http, render, client, measured] = s.ms;
        println!(
            "| {kind} | {http:.2} | {render:.2} | {client:.2} | {measured:.2} | {} | {} |",
            verdict(http / client, target),
            ratio(http, measured)
        );
    }
    for (kind, s) in [("counter", &scrape_c), ("histogram", &scrape_h)] {
        let [http, render, client, measured] = s.bytes;
        println!(
            "exposition bytes, {kind}: ours {http} (HTTP response) / {render} (render), prometheus-client {client}, measured {measured}"
        );
    }
    println!();
    let pct = |p: Option<f64>| p.map_or_else(|| "n/a".to_owned(), |p| format!("{p:.3} %"));
    println!(
        "| idle CPU, {n} histogram series, running server, over {:.1} s | % of one core |",
        plan.idle.as_secs_f64()
    );
    println!("|---|---|");
    println!("| no idle timeout | {} |", pct(idle.percent[0]));
    println!(
        "| idle_timeout(600 s): upkeep scan every 5 s | {} |",
        pct(idle.percent[1])
    );
    println!(
        "| one upkeep scan of {n} series (run_upkeep, median) | {:.2} ms, i.e. {:.3} % at one scan per 5 s |",
        idle.scan_ms,
        idle.scan_ms / 5_000.0 * 100.0
    );
}
