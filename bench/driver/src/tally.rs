//! What the worker tasks count (answers, failures, latencies, resumed and
//! post-quantum handshakes), added up and printed as the run's one JSON line.

use std::io;

#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) ok: u64,
    pub(crate) non200: u64,
    pub(crate) errors: u64,
    pub(crate) resumed: u64,
    pub(crate) pq: u64,
    pub(crate) lat_us: Vec<u32>,
    pub(crate) first_error: Option<String>,
}

/// The tallies of every worker task, added up.
pub(crate) async fn gather(handles: Vec<tokio::task::JoinHandle<Tally>>) -> io::Result<Tally> {
    let mut all = Tally::default();
    for h in handles {
        let t = h.await.map_err(io::Error::other)?;
        all.ok += t.ok;
        all.non200 += t.non200;
        all.errors += t.errors;
        all.resumed += t.resumed;
        all.pq += t.pq;
        all.lat_us.extend(t.lat_us);
        if all.first_error.is_none() {
            all.first_error = t.first_error;
        }
    }
    Ok(all)
}

/// Prints a run's figures as one JSON line (the harness reads the last line).
pub(crate) fn print_tally(mut all: Tally, elapsed: f64) {
    all.lat_us.sort_unstable();
    let pct = |p: f64| -> u32 {
        if all.lat_us.is_empty() {
            return 0;
        }
        let i = ((all.lat_us.len() as f64 - 1.0) * p).round() as usize;
        all.lat_us[i]
    };
    let mean = if all.lat_us.is_empty() {
        0.0
    } else {
        all.lat_us.iter().map(|&v| v as f64).sum::<f64>() / all.lat_us.len() as f64
    };
    println!(
        "{{\"requests\":{},\"non200\":{},\"errors\":{},\"resumed\":{},\"pq\":{},\"elapsed_s\":{:.3},\"rps\":{:.1},\"p50_us\":{},\"p99_us\":{},\"mean_us\":{:.1},\"first_error\":{}}}",
        all.ok,
        all.non200,
        all.errors,
        all.resumed,
        all.pq,
        elapsed,
        all.ok as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        mean,
        json_str(all.first_error.as_deref()),
    );
}

pub(crate) fn json_str(s: Option<&str>) -> String {
    match s {
        None => "null".into(),
        Some(s) => {
            let esc: String = s
                .chars()
                .map(|c| match c {
                    '"' | '\\' => format!("\\{c}"),
                    c if (c as u32) < 0x20 => " ".into(),
                    c => c.to_string(),
                })
                .collect();
            format!("\"{esc}\"")
        }
    }
}
