//! A simulated Flight SQL server workload, shared by `examples/server.rs` and the tests.
//!
//! Include it with `#[path = "support/workload.rs"] mod workload;` from an example, or
//! `#[path = "../examples/support/workload.rs"] mod workload;` from a test.
//!
//! Each [`Workload::step`] simulates one Flight RPC. Durations are computed from a small
//! deterministic random generator (the same seed gives the same sequence of requests), not
//! slept; only the timers measure real (tiny) spans of simulated work.
//!
//! # Metrics (names are stable: tests and dashboards use them)
//!
//! | name | type | labels | recorded through |
//! |---|---|---|---|
//! | `flight_requests_total` | counter | `method`, `status` | `increment_counter` |
//! | `flight_errors_total` | counter | varies by call: `{method, code}`, `{method, code, table}` or `{code}` | `increment_counter` |
//! | `flight_request_duration_seconds` | histogram | `method` | `record_histogram` (simulated seconds) |
//! | `flight_query_duration_seconds` | histogram | none | `start_timer` + `stop()` (real seconds) |
//! | `flight_handler_duration_seconds` | histogram | none | `start_timer` dropped at the end of the step (real seconds) |
//! | `flight_requests_in_flight` | gauge | none | `record_gauge`, up at the start of a request, down at its end |
//! | `flight_bytes_sent_total` | counter | `method` | `metrics::counter!` macro |
//! | `flight_result_cache_entries` | gauge | none | `record_gauge` |
//!
//! Label values:
//!
//! * `method`: `GetFlightInfo`, `DoGet`, `DoPut`, `DoAction`, `Handshake`, `ListFlights`.
//! * `status` and `code`: gRPC status names, `OK` (never a `code`), `INVALID_ARGUMENT`,
//!   `NOT_FOUND`, `UNAUTHENTICATED`, `RESOURCE_EXHAUSTED`, `INTERNAL`, `UNAVAILABLE`.
//! * `table`: `orders`, `customers`, `lineitem`, `nation`.
//!
//! Error label shapes, as the real server recorded them: authentication failures carry only
//! `code`; `NOT_FOUND` from the query methods (`GetFlightInfo`, `DoGet`, `DoPut`) adds the
//! `table` that was not found; every other error carries `method` and `code`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use porter_metrics::Collector;

/// Counter: requests by `method` and `status`.
pub const REQUESTS: &str = "flight_requests_total";
/// Counter: errors; label sets vary by call (see the module documentation).
pub const ERRORS: &str = "flight_errors_total";
/// Histogram: simulated request durations by `method`.
pub const REQUEST_DURATION: &str = "flight_request_duration_seconds";
/// Histogram: query execution time measured by a stopped timer.
pub const QUERY_DURATION: &str = "flight_query_duration_seconds";
/// Histogram: handler time measured by a scoped (dropped) timer.
pub const HANDLER_DURATION: &str = "flight_handler_duration_seconds";
/// Gauge: requests being handled.
pub const IN_FLIGHT: &str = "flight_requests_in_flight";
/// Counter (through the `metrics` macros): bytes sent by `method`.
pub const BYTES_SENT: &str = "flight_bytes_sent_total";
/// Gauge: entries in the result-set cache.
pub const CACHE_ENTRIES: &str = "flight_result_cache_entries";

/// The Flight RPC methods, with their share of the traffic (percent).
pub const METHODS: [(&str, u64); 6] = [
    ("GetFlightInfo", 30),
    ("DoGet", 30),
    ("DoPut", 10),
    ("DoAction", 10),
    ("Handshake", 10),
    ("ListFlights", 10),
];

/// Tables the simulated queries read and write.
pub const TABLES: [&str; 4] = ["orders", "customers", "lineitem", "nation"];

/// Most entries the result-set cache holds.
pub const CACHE_CAPACITY: u64 = 256;

/// xorshift64*: tiny, deterministic, good enough for a simulation.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator; seed 0 is replaced by a fixed non-zero seed.
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// One of `items`, uniformly.
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// What the workload recorded, to compare with a scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    /// Steps run (one request each).
    pub steps: u64,
    /// `flight_requests_total` by `(method, status)`.
    pub requests: BTreeMap<(&'static str, &'static str), u64>,
    /// `flight_errors_total` increments, all label shapes together.
    pub errors: u64,
    /// Errors recorded with `{code}` only.
    pub errors_code_only: u64,
    /// Errors recorded with `{method, code, table}`.
    pub errors_with_table: u64,
    /// `flight_bytes_sent_total` by method.
    pub bytes_sent: BTreeMap<&'static str, u64>,
    /// Timers stopped into `flight_query_duration_seconds`.
    pub queries: u64,
    /// Sum of the simulated durations recorded in `flight_request_duration_seconds`.
    pub simulated_seconds: f64,
}

impl Tally {
    /// Requests of `method`, every status.
    pub fn requests_of(&self, method: &str) -> u64 {
        self.requests
            .iter()
            .filter(|((m, _), _)| *m == method)
            .map(|(_, n)| n)
            .sum()
    }

    /// Bytes sent, every method.
    pub fn bytes_total(&self) -> u64 {
        self.bytes_sent.values().sum()
    }
}

/// State shared by every fork of a workload (one simulated server).
#[derive(Debug, Default)]
struct Shared {
    in_flight: i64,
    cache_entries: u64,
}

/// One simulated client stream against the server; see the module documentation.
pub struct Workload {
    collector: Arc<dyn Collector>,
    rng: XorShift,
    shared: Arc<Mutex<Shared>>,
    tally: Tally,
}

impl Workload {
    /// A workload recording through `collector`, with its own simulated server state.
    pub fn new(collector: Arc<dyn Collector>, seed: u64) -> Self {
        Self {
            collector,
            rng: XorShift::new(seed),
            shared: Arc::new(Mutex::new(Shared::default())),
            tally: Tally::default(),
        }
    }

    /// Another client stream against the same simulated server (same collector, same
    /// in-flight gauge and cache), with its own generator and tally.
    pub fn fork(&self, seed: u64) -> Self {
        Self {
            collector: self.collector.clone(),
            rng: XorShift::new(seed),
            shared: self.shared.clone(),
            tally: Tally::default(),
        }
    }

    /// What this stream recorded so far.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Runs `n` steps.
    pub fn run(&mut self, n: u64) {
        for _ in 0..n {
            self.step();
        }
    }

    /// Simulates one request.
    pub fn step(&mut self) {
        // Times the whole handler; records when dropped at the end of the step.
        let _handler = self.collector.start_timer(HANDLER_DURATION);
        self.tally.steps += 1;
        self.in_flight(1);

        let method = self.pick_method();
        let status = self.outcome(method);
        let ok = status == "OK";

        // Query methods execute SQL: a real timer around (simulated) work.
        if ok && matches!(method, "GetFlightInfo" | "DoGet" | "DoPut") {
            let timer = self.collector.start_timer(QUERY_DURATION);
            self.execute_query();
            let _seconds = timer.stop();
            self.tally.queries += 1;
        }

        let bytes = if ok { self.bytes_for(method) } else { 0 };
        if bytes > 0 {
            metrics::counter!(BYTES_SENT, "method" => method).increment(bytes);
            *self.tally.bytes_sent.entry(method).or_default() += bytes;
        }

        if !ok {
            self.record_error(method, status);
        }
        self.update_cache(method, ok);

        let seconds = self.simulated_duration(method, ok);
        self.collector
            .record_histogram(REQUEST_DURATION, seconds, &["method", method]);
        self.tally.simulated_seconds += seconds;

        self.collector
            .increment_counter(REQUESTS, &["method", method, "status", status]);
        *self.tally.requests.entry((method, status)).or_default() += 1;

        self.in_flight(-1);
    }

    fn pick_method(&mut self) -> &'static str {
        let mut roll = self.rng.below(100);
        for (method, share) in METHODS {
            if roll < share {
                return method;
            }
            roll -= share;
        }
        METHODS[0].0
    }

    /// The gRPC status of the request: about 8 % of requests fail.
    fn outcome(&mut self, method: &str) -> &'static str {
        if self.rng.below(100) >= 8 {
            return "OK";
        }
        match method {
            "Handshake" => "UNAUTHENTICATED",
            "GetFlightInfo" | "DoGet" | "DoPut" => match self.rng.below(10) {
                0..=3 => "NOT_FOUND",
                4..=5 => "INVALID_ARGUMENT",
                6 => "RESOURCE_EXHAUSTED",
                7..=8 => "INTERNAL",
                _ => "UNAVAILABLE",
            },
            _ => match self.rng.below(3) {
                0 => "INVALID_ARGUMENT",
                1 => "INTERNAL",
                _ => "UNAVAILABLE",
            },
        }
    }

    /// Error counters with the label shapes the real server used.
    fn record_error(&mut self, method: &'static str, code: &'static str) {
        self.tally.errors += 1;
        if code == "UNAUTHENTICATED" {
            // The auth middleware did not know the method.
            self.collector.increment_counter(ERRORS, &["code", code]);
            self.tally.errors_code_only += 1;
        } else if code == "NOT_FOUND" {
            let table = self.rng.pick(&TABLES);
            self.collector
                .increment_counter(ERRORS, &["method", method, "code", code, "table", table]);
            self.tally.errors_with_table += 1;
        } else {
            self.collector
                .increment_counter(ERRORS, &["method", method, "code", code]);
        }
    }

    /// Some real work for the query timer to measure: checksum a few simulated rows.
    fn execute_query(&mut self) {
        let rows = 100 + self.rng.below(900);
        let mut checksum = 0u64;
        for _ in 0..rows {
            checksum = checksum.rotate_left(5) ^ self.rng.next_u64();
        }
        std::hint::black_box(checksum);
    }

    fn bytes_for(&mut self, method: &str) -> u64 {
        match method {
            "DoGet" => 4_096 + self.rng.below(1 << 20),
            "GetFlightInfo" => 256 + self.rng.below(1_024),
            "ListFlights" => 512 + self.rng.below(4_096),
            "DoAction" => 64 + self.rng.below(256),
            "DoPut" => 32, // an acknowledgement
            _ => 0,        // Handshake sends a token in the headers
        }
    }

    /// Simulated seconds: a per-method median with a log-normal-ish spread; failures are
    /// quicker.
    fn simulated_duration(&mut self, method: &str, ok: bool) -> f64 {
        let median = match method {
            "Handshake" => 0.002,
            "ListFlights" => 0.004,
            "DoAction" => 0.008,
            "GetFlightInfo" => 0.02,
            "DoGet" => 0.12,
            _ => 0.25, // DoPut
        };
        let spread = (self.rng.next_f64() + self.rng.next_f64() + self.rng.next_f64() - 1.5) * 1.6;
        let seconds = median * spread.exp();
        if ok {
            seconds
        } else {
            seconds * 0.3
        }
    }

    fn in_flight(&self, delta: i64) {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.in_flight += delta;
        // Recorded under the lock so concurrent forks never leave a stale value.
        self.collector
            .record_gauge(IN_FLIGHT, shared.in_flight as f64, &[]);
    }

    /// Successful `DoGet` results are cached, a `DoPut` invalidates a few entries, a
    /// `DoAction` sometimes clears the cache; the gauge is set on every request.
    fn update_cache(&mut self, method: &str, ok: bool) {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        match method {
            _ if !ok => {}
            "DoGet" => shared.cache_entries = (shared.cache_entries + 1).min(CACHE_CAPACITY),
            "DoPut" => shared.cache_entries = shared.cache_entries.saturating_sub(4),
            "DoAction" if self.rng.below(20) == 0 => shared.cache_entries = 0,
            _ => {}
        }
        self.collector
            .record_gauge(CACHE_ENTRIES, shared.cache_entries as f64, &[]);
    }

    /// Entries in the simulated result-set cache.
    pub fn cache_entries(&self) -> u64 {
        self.shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .cache_entries
    }
}
