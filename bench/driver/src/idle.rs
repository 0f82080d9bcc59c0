//! `idle`: N keep-alive connections opened, one request made on each, then held
//! open and idle until a line arrives on stdin (or `--hold` runs out).

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::tally::json_str;
use crate::{open, read_one_response, request_bytes, tls_parts, Target};

pub(crate) async fn run(target: Target, count: usize, concurrency: usize, hold: f64) -> io::Result<()> {
    let tls = Arc::new(tls_parts(&target, false)?);
    let req: Arc<[u8]> = request_bytes(&target, false).into();
    let target = Arc::new(target);
    let timeout = Duration::from_secs_f64(target.timeout);
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let start = Instant::now();
    let mut handles = Vec::with_capacity(count);
    for _ in 0..count {
        let permit = sem.clone().acquire_owned().await.map_err(io::Error::other)?;
        let (tls, req, target) = (tls.clone(), req.clone(), target.clone());
        handles.push(tokio::spawn(async move {
            let r = tokio::time::timeout(timeout, async {
                let (mut stream, _) = open(&target, tls.as_ref().as_ref()).await?;
                stream.write_all(&req).await?;
                let mut reader = BufReader::with_capacity(1024, stream);
                let ok = read_one_response(&mut reader).await?;
                Ok::<_, io::Error>((reader, ok))
            })
            .await;
            drop(permit);
            match r {
                Ok(Ok((s, true))) => Ok(s),
                Ok(Ok((_, false))) => Err("non-200".to_string()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timeout".to_string()),
            }
        }));
    }
    let mut held = Vec::with_capacity(count);
    let mut errors = 0u64;
    let mut first_error = None;
    for h in handles {
        match h.await.map_err(io::Error::other)? {
            Ok(s) => held.push(s),
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    println!(
        "READY {{\"open\":{},\"errors\":{},\"open_s\":{:.3},\"first_error\":{}}}",
        held.len(),
        errors,
        start.elapsed().as_secs_f64(),
        json_str(first_error.as_deref())
    );
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut line = String::new();
    let _ = tokio::time::timeout(Duration::from_secs_f64(hold), stdin.read_line(&mut line)).await;
    drop(held);
    println!("DONE");
    Ok(())
}
