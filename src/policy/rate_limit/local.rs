//! The in-process token buckets of one route's `rate_limit`, when no
//! `rate_limit_store` shares them.
//!
//! Each bucket is one number, its "theoretical arrival time" (GCRA, the
//! token bucket written as a time): the moment it would be full again. A
//! request is let through when pushing that moment one `interval` later keeps
//! it within `burst` intervals of now. A bucket whose moment has passed is
//! full, which is exactly what a missing entry means, so idle keys can be
//! dropped at any time without changing an answer.
//!
//! Keys are spread over [`SHARDS`] small maps behind their own mutex (a
//! request holds one for a hash lookup). Memory is bounded however many
//! distinct keys arrive: each shard holds at most `max_keys / SHARDS`
//! entries. A full shard first drops its full buckets (free), then, if a
//! flood of live keys still fills it, the buckets closest to full: those
//! keys are forgotten and start again with a full bucket, the least harm an
//! eviction can do.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shards per limiter: enough that two cores rarely meet on one lock.
pub(crate) const SHARDS: usize = 64;

/// Default bound on the keys one route's limiter remembers (its maps stay under 2.5 MiB).
pub(crate) const DEFAULT_MAX_KEYS: usize = 100_000;

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Allow,
    /// Over the limit: one token is back after this long.
    Limited(Duration),
}

/// One route's buckets.
#[derive(Debug)]
pub(crate) struct LocalLimiter {
    /// Nanoseconds between two tokens.
    interval: u64,
    /// `burst * interval`: how far ahead of now a bucket's moment may run.
    tolerance: u64,
    /// Times are nanoseconds since this instant (never 0: see `now`).
    epoch: Instant,
    /// Keyed per process, so a client cannot aim many keys at one shard or entry.
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    /// `key: route`: a single bucket, kept in an atomic instead of a map.
    single: AtomicU64,
}

#[derive(Debug, Default)]
struct Shard {
    /// Key hash -> the moment the bucket is full again.
    buckets: HashMap<u64, u64, BuildHasherDefault<Passthrough>>,
}

impl LocalLimiter {
    pub(crate) fn new(interval: Duration, burst: u32, max_keys: usize) -> LocalLimiter {
        let interval = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX).max(1);
        LocalLimiter {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.max(1))),
            epoch: Instant::now(),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: max_keys.div_ceil(SHARDS).max(4),
            single: AtomicU64::new(0),
        }
    }

    /// Nanoseconds since the epoch, from 1 up (0 is never a live moment).
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX).saturating_add(1)
    }

    /// Hashes a key with this limiter's secret seed.
    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Takes a token from the bucket of the key whose hash is `key`.
    pub(crate) fn check(&self, key: u64) -> Decision {
        self.check_at(key, self.now())
    }

    /// Takes a token from the route's single bucket (`key: route`).
    pub(crate) fn check_single(&self) -> Decision {
        let now = self.now();
        let mut tat = self.single.load(Ordering::Relaxed);
        loop {
            let (decision, next) = self.step(tat, now);
            let Some(next) = next else { return decision };
            match self.single.compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return decision,
                Err(current) => tat = current,
            }
        }
    }

    /// GCRA: the decision, and the bucket's new moment when a token was taken.
    #[inline]
    fn step(&self, tat: u64, now: u64) -> (Decision, Option<u64>) {
        let next = tat.max(now).saturating_add(self.interval);
        if next - now > self.tolerance {
            return (Decision::Limited(Duration::from_nanos(next - self.tolerance - now)), None);
        }
        (Decision::Allow, Some(next))
    }

    fn check_at(&self, key: u64, now: u64) -> Decision {
        // The high bits pick the shard; the map uses the whole hash.
        let shard = &self.shards[(key >> 58) as usize % SHARDS];
        let mut shard = shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let tat = shard.buckets.get(&key).copied().unwrap_or(0);
        let (decision, next) = self.step(tat, now);
        if let Some(next) = next {
            if tat == 0 && shard.buckets.len() >= self.per_shard {
                shard.make_room(now, self.per_shard);
            }
            shard.buckets.insert(key, next);
        }
        decision
    }

    /// Keys remembered right now (for tests and the memory bound).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).buckets.len()).sum()
    }

    /// Entries the maps have room for without growing: what their memory is sized by.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).buckets.capacity()).sum()
    }

    /// The most keys this limiter remembers.
    #[cfg(test)]
    pub(crate) fn max_keys(&self) -> usize {
        self.per_shard * SHARDS
    }
}

impl Shard {
    /// Frees at least a quarter of a full shard, so a flood pays this O(n) pass
    /// once every `limit / 4` new keys.
    #[cold]
    fn make_room(&mut self, now: u64, limit: usize) {
        // Full buckets: forgetting them changes nothing.
        self.buckets.retain(|_, tat| *tat > now);
        if self.buckets.len() > limit * 3 / 4 {
            self.evict(now, limit);
        }
        // A fresh table: removals leave tombstones that would make the next
        // inserts grow it; rebuilt at `limit`, it holds a shard's worth without growing.
        let mut fresh = HashMap::with_capacity_and_hasher(limit, BuildHasherDefault::default());
        fresh.extend(self.buckets.drain());
        self.buckets = fresh;
    }

    /// A shard full of live keys: keep the half owing most.
    #[cold]
    fn evict(&mut self, now: u64, limit: usize) {
        // The keys actually being limited are the last to be forgotten. (A temporary
        // list: this runs once per `limit / 4` new keys, never per request.)
        let keep = limit / 2;
        let mut owed: Vec<u64> = self.buckets.values().map(|tat| *tat - now).collect();
        let dropped = owed.len() - keep;
        let (_, threshold, above) = owed.select_nth_unstable(dropped);
        let threshold = *threshold;
        let mut room_at_threshold = keep - above.iter().filter(|d| **d > threshold).count();
        self.buckets.retain(|_, tat| {
            let owes = *tat - now;
            if owes > threshold {
                return true;
            }
            let keep = owes == threshold && room_at_threshold > 0;
            room_at_threshold -= usize::from(keep);
            keep
        });
    }
}

/// The map's keys are already keyed SipHash values: hashing them again buys nothing.
#[derive(Debug, Default)]
struct Passthrough(u64);

impl Hasher for Passthrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; this path keeps the trait total.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn limiter(per_second: u32, burst: u32) -> LocalLimiter {
        LocalLimiter::new(Duration::from_secs(1) / per_second, burst, DEFAULT_MAX_KEYS)
    }

    #[test]
    fn burst_then_limited_then_refilled() {
        let l = limiter(10, 3); // a token every 100 ms, 3 at once
        let t = 1_000 * MS;
        for _ in 0..3 {
            assert_eq!(l.check_at(7, t), Decision::Allow);
        }
        assert_eq!(l.check_at(7, t), Decision::Limited(Duration::from_millis(100)));
        assert_eq!(l.check_at(7, t + 40 * MS), Decision::Limited(Duration::from_millis(60)));
        // One token back after 100 ms, and only one.
        assert_eq!(l.check_at(7, t + 100 * MS), Decision::Allow);
        assert!(matches!(l.check_at(7, t + 100 * MS), Decision::Limited(_)));
        // A long pause fills the bucket up to `burst`, not beyond.
        let later = t + 10_000 * MS;
        for _ in 0..3 {
            assert_eq!(l.check_at(7, later), Decision::Allow);
        }
        assert!(matches!(l.check_at(7, later), Decision::Limited(_)));
    }

    #[test]
    fn keys_are_separate() {
        let l = limiter(1, 1);
        let t = 5 * MS;
        assert_eq!(l.check_at(l.hash(b"a"), t), Decision::Allow);
        assert!(matches!(l.check_at(l.hash(b"a"), t), Decision::Limited(_)));
        assert_eq!(l.check_at(l.hash(b"b"), t), Decision::Allow);
    }

    #[test]
    fn steady_rate_is_held() {
        // 1000 requests spread evenly over 1 s at 100/s with burst 10: 100 + 10 pass.
        let l = limiter(100, 10);
        let allowed = (0..1000u64).filter(|i| l.check_at(1, MS + i * MS) == Decision::Allow).count();
        assert!((109..=111).contains(&allowed), "{allowed}");
    }

    #[test]
    fn single_bucket() {
        let l = limiter(1, 2);
        assert_eq!(l.check_single(), Decision::Allow);
        assert_eq!(l.check_single(), Decision::Allow);
        match l.check_single() {
            Decision::Limited(wait) => assert!(wait > Duration::from_millis(500) && wait <= Duration::from_secs(1)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn full_buckets_are_forgotten_first_then_those_owing_least() {
        // 8 keys per shard at most; a token an hour, two at once.
        let l = LocalLimiter::new(Duration::from_secs(3600), 2, SHARDS * 8);
        let t = 10 * MS;
        // `heavy` used its whole burst: it owes two hours.
        let heavy = l.hash(b"heavy");
        assert_eq!(l.check_at(heavy, t), Decision::Allow);
        assert_eq!(l.check_at(heavy, t), Decision::Allow);
        // A flood of first requests (one hour owed each) fills every shard many times over.
        for i in 0..100_000u32 {
            assert_eq!(l.check_at(l.hash(&i.to_be_bytes()), t + u64::from(i)), Decision::Allow);
            assert!(l.len() <= l.max_keys());
        }
        assert!(matches!(l.check_at(heavy, t + 200_000), Decision::Limited(_)), "the key owing most was kept");

        // Keys whose buckets are full again are dropped before anyone is evicted.
        let l = LocalLimiter::new(Duration::from_millis(10), 1, SHARDS * 8);
        let heavy = l.hash(b"heavy");
        assert_eq!(l.check_at(heavy, t), Decision::Allow);
        let later = t + 50 * MS; // every bucket from time t is full again
        for i in 0..1_000u32 {
            l.check_at(l.hash(&i.to_be_bytes()), later);
        }
        assert!(l.len() <= l.max_keys());
        assert_eq!(l.check_at(heavy, later), Decision::Allow);
    }

    /// A flood of a million distinct keys (each a client's first request) keeps the
    /// map at its bound: entries and the maps' capacity stay under `max_keys`.
    #[test]
    fn a_million_distinct_keys_stay_bounded() {
        // One token an hour: no bucket is ever full again during the test, so only
        // eviction can keep the bound.
        let l = LocalLimiter::new(Duration::from_secs(3600), 5, DEFAULT_MAX_KEYS);
        for i in 0..1_000_000u32 {
            let key = l.hash(&i.to_be_bytes());
            assert_eq!(l.check(key), Decision::Allow, "a new key starts with a full bucket");
        }
        let (len, capacity) = (l.len(), l.capacity());
        eprintln!("1,000,000 distinct keys: {len} remembered (bound {}), map capacity {capacity}", l.max_keys());
        assert!(len <= l.max_keys(), "{len} keys remembered, bound {}", l.max_keys());
        // hashbrown rounds up to a power of two with 1/8 spare: at most 2x + a little.
        assert!(capacity <= 2 * l.max_keys() + SHARDS * 8, "capacity {capacity}");
        // 16 bytes per entry and one control byte: the whole table stays in a few MiB.
        let bytes = capacity * 17;
        assert!(bytes < 4 << 20, "{bytes} bytes");
        // The newest keys are still limited: the flood did not reset everyone.
        let recent = l.hash(&999_999u32.to_be_bytes());
        for _ in 0..4 {
            assert_eq!(l.check(recent), Decision::Allow);
        }
        assert!(matches!(l.check(recent), Decision::Limited(_)));
    }
}
