//! Consistent hashing on a ring with virtual nodes (Karger et al.; the
//! "ketama" ring of memcached clients and nginx's `hash ... consistent`).
//!
//! Each server owns [`POINTS_PER_WEIGHT`] points per unit of weight, placed
//! by hashing its address and the point's number; a request's key (see
//! `key.rs`) goes to the server owning the first point at or after it.
//! Because a server's points depend only on its own address and weight,
//! adding or removing one of N servers moves only the keys that land on its
//! points — about 1/N of them — and every other key stays where it was. A
//! server that is down, or already tried by this request, hands its keys to
//! the next point's server on the ring: its keys spread over the others and
//! come back when it does, while every other key stays put.
//!
//! The ring is built once per configuration (sorted, then binary-searched
//! per pick): no lock, no allocation on the hot path. Choose it for cache
//! affinity — sessions held in memory, per-user caches — where sending the
//! same client to the same server matters more than an even spread.

use std::sync::Arc;

use super::key::hash_bytes;
use super::Tried;
use crate::config::HashOn;
use crate::upstream::server::Server;

/// Ring points per unit of weight (160 per server at weight 1, as ketama:
/// with 160 points a server's share of the keys is within about ±10% of its due).
pub(super) const POINTS_PER_WEIGHT: u64 = 160;
/// Upper bound on ring size; very large weights get fewer points per unit.
const MAX_POINTS: u64 = 160_000;

#[derive(Debug)]
pub(crate) struct ConsistentHash {
    pub hash_on: HashOn,
    /// (point, server index), sorted by point.
    ring: Box<[(u64, u32)]>,
}

impl ConsistentHash {
    pub(crate) fn new(hash_on: HashOn, servers: &[Arc<Server>]) -> ConsistentHash {
        let total_weight: u64 = servers.iter().map(|s| u64::from(s.weight)).sum();
        let per_weight = if total_weight * POINTS_PER_WEIGHT > MAX_POINTS {
            (MAX_POINTS / total_weight.max(1)).max(1)
        } else {
            POINTS_PER_WEIGHT
        };
        let mut ring = Vec::with_capacity((total_weight * per_weight) as usize);
        let mut name = Vec::with_capacity(64);
        for (index, server) in servers.iter().enumerate() {
            for point in 0..u64::from(server.weight) * per_weight {
                name.clear();
                name.extend_from_slice(server.label.as_bytes());
                name.push(b'#');
                name.extend_from_slice(point.to_string().as_bytes());
                ring.push((hash_bytes(&name), index as u32));
            }
        }
        ring.sort_unstable();
        ConsistentHash { hash_on, ring: ring.into_boxed_slice() }
    }

    pub(crate) fn pick(&self, servers: &[Arc<Server>], tried: Tried, key: u64) -> Option<usize> {
        let len = self.ring.len();
        if len == 0 {
            return None;
        }
        let start = self.ring.partition_point(|&(point, _)| point < key);
        // Walk clockwise past servers that are down or tried; each is checked
        // at most once per distinct run of its points, and the walk stops
        // after one full turn.
        let mut last_rejected = u32::MAX;
        for step in 0..len {
            let (_, index) = self.ring[(start + step) % len];
            if index == last_rejected {
                continue;
            }
            let i = index as usize;
            if !tried.contains(i) && servers[i].is_available() {
                return Some(i);
            }
            last_rejected = index;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PassiveConfig;
    use crate::upstream::server::test_server;

    fn servers(n: usize) -> Vec<Arc<Server>> {
        (0..n).map(|i| test_server(&format!("10.0.0.{}:8080", i + 1), 1, PassiveConfig::default())).collect()
    }

    fn keys(n: usize) -> Vec<u64> {
        (0..n).map(|i| hash_bytes(format!("user-{i}").as_bytes())).collect()
    }

    fn owners(ch: &ConsistentHash, s: &[Arc<Server>], keys: &[u64]) -> Vec<String> {
        keys.iter().map(|&k| s[ch.pick(s, Tried::default(), k).unwrap()].label.to_string()).collect()
    }

    #[test]
    fn same_key_same_server() {
        let s = servers(5);
        let ch = ConsistentHash::new(HashOn::ClientIp, &s);
        for k in keys(100) {
            let first = ch.pick(&s, Tried::default(), k);
            for _ in 0..5 {
                assert_eq!(ch.pick(&s, Tried::default(), k), first);
            }
        }
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth() {
        for n in [3usize, 5, 10] {
            let all = servers(n);
            let fewer: Vec<_> = all[..n - 1].to_vec();
            let keys = keys(10_000);
            let before = owners(&ConsistentHash::new(HashOn::ClientIp, &all), &all, &keys);
            let after = owners(&ConsistentHash::new(HashOn::ClientIp, &fewer), &fewer, &keys);
            let removed = &*all[n - 1].label;
            let mut moved = 0;
            for (b, a) in before.iter().zip(&after) {
                if b != a {
                    moved += 1;
                    assert_eq!(b, removed, "only the removed server's keys move");
                }
            }
            let fraction = moved as f64 / keys.len() as f64;
            let ideal = 1.0 / n as f64;
            eprintln!("n={n}: {fraction:.4} of keys moved (ideal {ideal:.4})");
            assert!(fraction > 0.5 * ideal && fraction < 1.5 * ideal, "n={n}: moved {fraction}");
        }
    }

    #[test]
    fn adding_one_moves_only_keys_to_it() {
        let all = servers(6);
        let fewer: Vec<_> = all[..5].to_vec();
        let keys = keys(10_000);
        let before = owners(&ConsistentHash::new(HashOn::ClientIp, &fewer), &fewer, &keys);
        let after = owners(&ConsistentHash::new(HashOn::ClientIp, &all), &all, &keys);
        let added = &*all[5].label;
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).inspect(|(_, a)| assert_eq!(*a, added)).count();
        let fraction = moved as f64 / keys.len() as f64;
        assert!(fraction > 0.5 / 6.0 && fraction < 1.5 / 6.0, "{fraction}");
    }

    #[test]
    fn a_down_server_hands_its_keys_on_and_gets_them_back() {
        let s = servers(4);
        let ch = ConsistentHash::new(HashOn::ClientIp, &s);
        let keys = keys(5_000);
        let before = owners(&ch, &s, &keys);
        s[2].set_healthy(false);
        let during = owners(&ch, &s, &keys);
        let down = &*s[2].label;
        for (b, d) in before.iter().zip(&during) {
            if b == down {
                assert_ne!(d, down);
            } else {
                assert_eq!(b, d, "keys of servers that are up stay put");
            }
        }
        // Its keys spread over the others rather than all landing on one.
        let heirs: std::collections::HashSet<_> =
            before.iter().zip(&during).filter(|(b, _)| *b == down).map(|(_, d)| d.clone()).collect();
        assert_eq!(heirs.len(), 3, "{heirs:?}");
        s[2].set_healthy(true);
        assert_eq!(owners(&ch, &s, &keys), before);
    }

    #[test]
    fn weights_scale_the_share() {
        let s: Vec<_> = [3u32, 1]
            .iter()
            .enumerate()
            .map(|(i, &w)| test_server(&format!("10.0.1.{}:80", i + 1), w, PassiveConfig::default()))
            .collect();
        let ch = ConsistentHash::new(HashOn::ClientIp, &s);
        let heavy = keys(10_000).iter().filter(|&&k| ch.pick(&s, Tried::default(), k) == Some(0)).count();
        let share = heavy as f64 / 10_000.0;
        assert!((0.68..=0.82).contains(&share), "{share}");
    }

    #[test]
    fn tried_servers_are_skipped_and_none_left_is_none() {
        let s = servers(3);
        let ch = ConsistentHash::new(HashOn::ClientIp, &s);
        let k = hash_bytes(b"k");
        let first = ch.pick(&s, Tried::default(), k).unwrap();
        let mut tried = Tried::default();
        tried.insert(first);
        let second = ch.pick(&s, tried, k).unwrap();
        assert_ne!(first, second);
        tried.insert(second);
        let third = ch.pick(&s, tried, k).unwrap();
        tried.insert(third);
        assert_eq!(ch.pick(&s, tried, k), None);
    }
}
