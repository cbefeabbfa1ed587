//! Process metrics (feature `process`): [`Builder::process_metrics`](crate::Builder::process_metrics).
//!
//! Read when a scrape or a push reads the pipeline, as client_golang reads them at each
//! scrape, by `metrics-process` (which reads `/proc` on Linux), and written as families of
//! their own beside the store's:
//!
//! | name | type | what |
//! |---|---|---|
//! | `process_cpu_seconds_total` | counter | user and system CPU time, in seconds with the clock tick's resolution |
//! | `process_resident_memory_bytes` | gauge | resident memory |
//! | `process_virtual_memory_bytes` | gauge | virtual memory |
//! | `process_virtual_memory_max_bytes` | gauge | the address-space limit; -1 when unlimited |
//! | `process_open_fds`, `process_max_fds` | gauge | open file descriptors and their limit |
//! | `process_start_time_seconds` | gauge | when the process started, in seconds since the Unix epoch |
//! | `process_threads` | gauge | the process' threads |
//!
//! A value the platform does not give is left out. A name the application records itself
//! is left to the application (so no family is written twice).

use crate::encode::ExtraFamily;
use crate::store::kind::Kind;

/// One family of the table above: its name, HELP text and kind, and its value in `m`.
type Read = fn(&metrics_process::collector::Metrics) -> Option<f64>;

const FAMILIES: [(&str, &str, Kind, Read); 8] = [
    (
        "process_cpu_seconds_total",
        "User and system CPU time the process spent, in seconds.",
        Kind::Counter,
        |m| m.cpu_seconds_total,
    ),
    (
        "process_resident_memory_bytes",
        "Resident memory of the process, in bytes.",
        Kind::Gauge,
        |m| m.resident_memory_bytes.map(|v| v as f64),
    ),
    (
        "process_virtual_memory_bytes",
        "Virtual memory of the process, in bytes.",
        Kind::Gauge,
        |m| m.virtual_memory_bytes.map(|v| v as f64),
    ),
    (
        "process_virtual_memory_max_bytes",
        "The process' address-space limit, in bytes; -1 when unlimited.",
        Kind::Gauge,
        // `metrics-process` reads an unlimited address space as 0, a limit no running
        // process can have.
        |m| {
            m.virtual_memory_max_bytes
                .map(|v| if v == 0 { -1.0 } else { v as f64 })
        },
    ),
    (
        "process_open_fds",
        "File descriptors the process has open.",
        Kind::Gauge,
        |m| m.open_fds.map(|v| v as f64),
    ),
    (
        "process_max_fds",
        "The most file descriptors the process may open (its soft limit).",
        Kind::Gauge,
        |m| m.max_fds.map(|v| v as f64),
    ),
    (
        "process_start_time_seconds",
        "When the process started, in seconds since the Unix epoch.",
        Kind::Gauge,
        |m| m.start_time_seconds.map(|v| v as f64),
    ),
    (
        "process_threads",
        "Threads of the process.",
        Kind::Gauge,
        |m| m.threads.map(|v| v as f64),
    ),
];

/// The process' families, read now; `taken` tells a name the store already holds.
pub(crate) fn families(taken: impl Fn(&str) -> bool) -> Vec<ExtraFamily> {
    let metrics = metrics_process::collector::collect();
    FAMILIES
        .iter()
        .filter(|(name, ..)| !taken(name))
        .filter_map(|(name, help, kind, read)| {
            Some(ExtraFamily {
                name,
                help,
                kind: *kind,
                samples: vec![(Vec::new(), read(&metrics)?)],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_has_sub_second_resolution_and_an_unlimited_address_space_is_minus_one() {
        let mut m = metrics_process::collector::Metrics {
            cpu_seconds_total: Some(1.25),
            virtual_memory_max_bytes: Some(0),
            ..Default::default()
        };
        let read = |name: &str, m: &metrics_process::collector::Metrics| {
            FAMILIES.iter().find(|f| f.0 == name).and_then(|f| (f.3)(m))
        };
        assert_eq!(read("process_cpu_seconds_total", &m), Some(1.25));
        assert_eq!(read("process_virtual_memory_max_bytes", &m), Some(-1.0));
        m.virtual_memory_max_bytes = Some(1 << 30);
        assert_eq!(
            read("process_virtual_memory_max_bytes", &m),
            Some(f64::from(1u32 << 30))
        );
        assert_eq!(read("process_threads", &m), None, "left out when unknown");
    }

    #[test]
    fn names_the_application_holds_are_left_to_it() {
        let all = families(|_| false);
        assert!(all.iter().any(|f| f.name == "process_cpu_seconds_total"));
        let some = families(|name| name == "process_open_fds");
        assert!(!some.iter().any(|f| f.name == "process_open_fds"));
        let distinct: std::collections::HashSet<_> = FAMILIES.iter().map(|f| f.1).collect();
        assert_eq!(distinct.len(), FAMILIES.len(), "one HELP text each");
    }
}
