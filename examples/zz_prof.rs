use porter_metrics::{Builder, Collector, Limits};
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let threads: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let local = Builder::new().limits(Limits::unlimited()).build_local();
    let users: Vec<String> = (0..n).map(|i| format!("u{i}")).collect();
    let iters = 20_000_000usize;
    let t = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let c = local.collector();
            let users = &users;
            s.spawn(move || {
                let mut i = 0;
                for _ in 0..iters {
                    i += 1;
                    if i == n {
                        i = 0;
                    }
                    if std::env::var("H").is_ok() {
                        c.record_histogram(
                            "sweep_seconds",
                            0.1,
                            &["user", &users[i], "method", "GET"],
                        );
                    } else {
                        c.increment_counter("sweep_total", &["user", &users[i], "method", "GET"]);
                    }
                }
            });
        }
    });
    println!(
        "{n} series, {threads} threads: {:.1} ns/call/thread",
        t.elapsed().as_nanos() as f64 / iters as f64
    );
}
