//! What recording one request's metrics costs in CPU, measured on porter's own
//! counters (`src/stats.rs`, included as is): the clock read at arrival, the
//! elapsed time at the response head, the status-class count and the latency
//! histogram — everything the request path does for /metrics. CPU time comes
//! from /proc (not the wall clock), so a busy machine does not inflate it.
//!
//! `src/stats.rs` uses the `http` crate, so the build passes the one cargo built:
//!
//!     cargo build --release
//!     rustc -O --edition 2021 bench/stats_cost.rs -o /tmp/stats_cost -L target/release/deps \
//!       --extern http="$(ls target/release/deps/libhttp-*.rlib | head -1)"
//!     taskset -c 0 /tmp/stats_cost

#[path = "../src/stats.rs"]
#[allow(dead_code)]
mod stats;

use std::hint::black_box;
use std::time::Instant;

const N: u32 = 20_000_000;

/// CPU time of this process in ns (utime + stime, 10 ms ticks; N makes that fine enough).
fn cpu_ns() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit(") ").next().unwrap().split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks * 1e7
}

fn per_iteration(f: impl Fn(u32)) -> f64 {
    let t = cpu_ns();
    for i in 0..N {
        f(i);
    }
    (cpu_ns() - t) / f64::from(N)
}

fn main() {
    let responses = stats::StatusCounts::default();
    let latency = stats::Latency::default();
    for round in 1..=3 {
        let recorded = per_iteration(|i| {
            let start = Instant::now();
            responses.record(black_box(200 + (i & 1) as u16));
            latency.record(start.elapsed());
        });
        let clock = per_iteration(|_| {
            black_box(Instant::now());
        });
        let empty = per_iteration(|i| {
            black_box(i);
        });
        println!("round {round}: {recorded:.1} ns CPU per recorded request (one clock read {clock:.1} ns, empty loop {empty:.1} ns)");
    }
    black_box(latency.snapshot());
}
