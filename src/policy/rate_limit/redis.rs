//! `rate_limit_store.redis`: the buckets live in Redis, so every porter using
//! the same Redis shares them and N instances let through the configured rate
//! in all, not N times it.
//!
//! One Lua script runs the same GCRA step as the local limiter atomically on
//! the Redis server, with the server's clock (instances need not agree on the
//! time), and gives each key an expiry at the moment its bucket is full again,
//! so idle keys leave Redis by themselves.
//!
//! A request never waits on Redis longer than `timeout`: past it, or while
//! Redis is unreachable, `on_error` answers, the failure is counted
//! (`porter_rate_limit_store_errors_total`) and logged at most every few
//! seconds. One multiplexed connection carries every request; a background
//! task (re)connects it, so a request never waits for a connection attempt.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::local::Decision;
use crate::config::{OnError, RateLimitStoreConfig};

/// KEYS[1]: the bucket. ARGV[1]: microseconds between two tokens; ARGV[2]:
/// `burst` times that. Returns 0 (allowed) or the microseconds until a token
/// is back. The stored value is the moment the bucket is full again, in the
/// server's microseconds; the key expires then.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now) or now
if tat < now then tat = now end
local next = tat + interval
if next - now > tolerance then
  return next - tolerance - now
end
redis.call('SET', KEYS[1], string.format('%d', next), 'PX', math.ceil((next - now) / 1000))
return 0
";

/// Consecutive timeouts after which the connection is taken as dead and replaced
/// (one slow answer on a loaded machine is not an outage).
const TIMEOUTS_BEFORE_RECONNECT: u32 = 3;
/// The longest a connection attempt (and its first PING) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between failed connection attempts, doubling up to the maximum.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// At most one warning per this long; the others are counted into the next one.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The shared Redis connection of one configuration.
#[derive(Debug)]
pub(crate) struct RedisStore {
    client: redis::Client,
    /// `None` while disconnected: requests then go to `on_error` at once.
    conn: ArcSwapOption<MultiplexedConnection>,
    on_error: OnError,
    timeout: Duration,
    script: redis::Script,
    timeouts_in_row: AtomicU32,
    /// Requests answered by `on_error`; carried over a reload (a counter for /metrics).
    errors: Arc<AtomicU64>,
    /// Wakes the connection task when a request finds the connection broken.
    reconnect: Notify,
    log: Mutex<LogState>,
}

#[derive(Debug)]
struct LogState {
    last: Option<Instant>,
    suppressed: u64,
}

impl RedisStore {
    /// Starts the connection task, which ends with `cancel` (the configuration's).
    /// `previous` is the store of the configuration being replaced: its error count goes on.
    pub(crate) fn start(
        config: &RateLimitStoreConfig,
        previous: Option<&RedisStore>,
        cancel: &CancellationToken,
    ) -> Result<Arc<RedisStore>, String> {
        let client = redis::Client::open(config.redis.as_str())
            .map_err(|_| "rate_limit_store.redis: not a valid Redis URL".to_string())?;
        let store = Arc::new(RedisStore {
            client,
            conn: ArcSwapOption::empty(),
            on_error: config.on_error,
            timeout: config.timeout,
            script: redis::Script::new(GCRA),
            timeouts_in_row: AtomicU32::new(0),
            errors: previous.map(|p| p.errors.clone()).unwrap_or_default(),
            reconnect: Notify::new(),
            log: Mutex::new(LogState { last: None, suppressed: 0 }),
        });
        let task = store.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = connect_loop(task) => {}
            }
        });
        Ok(store)
    }

    /// Requests whose rate limit Redis did not decide (`on_error` answered them).
    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Whether a connection is up (tests wait for it before counting).
    pub(crate) fn connected(&self) -> bool {
        self.conn.load().is_some()
    }

    /// Takes a token from the bucket `key` (a full Redis key), or lets `on_error` answer.
    pub(crate) async fn check(&self, key: &[u8], interval: Duration, burst: u32) -> Decision {
        let Some(conn) = self.conn.load_full() else {
            return self.failed("not connected");
        };
        let mut conn = MultiplexedConnection::clone(&conn);
        // Microseconds, Redis's resolution; a faster rate than 1/µs is 1/µs.
        let interval_us = u64::try_from(interval.as_micros()).unwrap_or(u64::MAX).max(1);
        let tolerance_us = interval_us.saturating_mul(u64::from(burst.max(1)));
        let mut invocation = self.script.key(key);
        invocation.arg(interval_us).arg(tolerance_us);
        match tokio::time::timeout(self.timeout, invocation.invoke_async::<i64>(&mut conn)).await {
            Ok(Ok(wait_us)) => {
                self.timeouts_in_row.store(0, Ordering::Relaxed);
                match u64::try_from(wait_us) {
                    Ok(0) | Err(_) => Decision::Allow,
                    Ok(us) => Decision::Limited(Duration::from_micros(us)),
                }
            }
            Ok(Err(error)) => {
                if error.is_io_error() || error.is_connection_dropped() || error.is_unrecoverable_error() {
                    self.disconnect();
                }
                self.failed(&error.to_string())
            }
            Err(_) => {
                if self.timeouts_in_row.fetch_add(1, Ordering::Relaxed) + 1 >= TIMEOUTS_BEFORE_RECONNECT {
                    self.disconnect();
                }
                self.failed("no answer within rate_limit_store.timeout")
            }
        }
    }

    /// Drops the connection and has the connection task open a new one.
    fn disconnect(&self) {
        if self.conn.swap(None).is_some() {
            self.reconnect.notify_one();
        }
    }

    /// Counts and (now and then) logs a failure; `on_error` gives the answer.
    fn failed(&self, why: &str) -> Decision {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.warn(why);
        match self.on_error {
            OnError::Allow => Decision::Allow,
            // No bucket to say when: try again in a second.
            OnError::Deny => Decision::Limited(Duration::from_secs(1)),
        }
    }

    #[cold]
    fn warn(&self, why: &str) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if log.last.is_some_and(|last| last.elapsed() < LOG_EVERY) {
            log.suppressed += 1;
            return;
        }
        let suppressed = std::mem::take(&mut log.suppressed);
        log.last = Some(Instant::now());
        drop(log);
        let on_error = match self.on_error {
            OnError::Allow => "allow",
            OnError::Deny => "deny",
        };
        tracing::warn!(
            error = why,
            on_error,
            similar_since_last_warning = suppressed,
            "rate_limit_store: Redis could not decide a rate limit; on_error answered"
        );
    }
}

/// Keeps one connection up; ends with the configuration's cancellation.
async fn connect_loop(store: Arc<RedisStore>) {
    let mut delay = RETRY_MIN;
    loop {
        if store.conn.load().is_some() {
            // `notify_one` leaves a permit when nobody waits: a disconnect is never missed.
            store.reconnect.notified().await;
            continue;
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, connect(&store.client, &store.script)).await {
            Ok(Ok(conn)) => {
                store.timeouts_in_row.store(0, Ordering::Relaxed);
                store.conn.store(Some(Arc::new(conn)));
                tracing::info!("rate_limit_store: connected to Redis");
                delay = RETRY_MIN;
                continue;
            }
            Ok(Err(error)) => store.warn(&format!("cannot connect: {error}")),
            Err(_) => store.warn("cannot connect: no answer within 1s"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RETRY_MAX);
    }
}

/// A new connection that has answered, with the script loaded: a request's first
/// EVALSHA then needs one round trip, not three (NOSCRIPT, SCRIPT LOAD, EVALSHA).
async fn connect(client: &redis::Client, script: &redis::Script) -> redis::RedisResult<MultiplexedConnection> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    script.load_async(&mut conn).await?;
    Ok(conn)
}
