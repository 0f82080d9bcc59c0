//! `rate`: open-loop load at a fixed request rate (the "fixed 10k req/s"
//! scenario), like wrk2 but with the harness's JSON output. N keep-alive
//! connections each send one request every N / rate seconds, staggered so
//! the sends are spread evenly. A connection whose previous response came
//! back after the next request was due sends at once, and that request's
//! latency is counted from when it was due, not from when it went out: the
//! server's lag is charged to it (no coordinated omission). A request sent
//! on time is timed from when it went out, so the timer's own lateness
//! (tokio's 1 ms wheel) is not charged to the server.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, BufReader};

use crate::{gather, open, print_tally, read_one_response, request_bytes, tls_parts, Tally, Target};

pub(crate) async fn run(target: Target, rate: f64, connections: usize, duration: f64) -> io::Result<()> {
    if rate.is_nan() || rate <= 0.0 || connections == 0 {
        return Err(io::Error::other("rate and connections must be positive"));
    }
    let tls = tls_parts(&target, false)?;
    let req = request_bytes(&target, false);
    let timeout = Duration::from_secs_f64(target.timeout);
    // Open every connection before the clock starts.
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (stream, _) = open(&target, tls.as_ref()).await?;
        streams.push(BufReader::with_capacity(16 * 1024, stream));
    }
    let req: Arc<[u8]> = req.into();
    let interval = Duration::from_secs_f64(connections as f64 / rate);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(duration);
    let mut handles = Vec::with_capacity(connections);
    for (i, mut reader) in streams.into_iter().enumerate() {
        let req = req.clone();
        handles.push(tokio::spawn(async move {
            let mut t = Tally::default();
            let mut due = start + interval.mul_f64(i as f64 / connections as f64);
            let mut free_at = start;
            while due < end {
                tokio::time::sleep_until(due.into()).await;
                let sent = Instant::now();
                let from = if free_at > due { due } else { sent };
                let r = tokio::time::timeout(timeout, async {
                    reader.get_mut().write_all(&req).await?;
                    read_one_response(&mut reader).await
                })
                .await;
                free_at = Instant::now();
                match r {
                    Ok(Ok(true)) => {
                        t.ok += 1;
                        t.lat_us.push((free_at - from).as_micros().min(u32::MAX as u128) as u32);
                    }
                    Ok(Ok(false)) => t.non200 += 1,
                    // The connection is unusable after an error or a timeout
                    // mid-response: count it and stop this connection.
                    Ok(Err(e)) => {
                        t.errors += 1;
                        t.first_error.get_or_insert_with(|| e.to_string());
                        break;
                    }
                    Err(_) => {
                        t.errors += 1;
                        t.first_error.get_or_insert_with(|| "timeout".into());
                        break;
                    }
                }
                due += interval;
            }
            t
        }));
    }
    print_tally(gather(handles).await?, start.elapsed().as_secs_f64());
    Ok(())
}
