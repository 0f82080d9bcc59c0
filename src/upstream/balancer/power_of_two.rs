//! Power of two choices: draw two different available servers at random,
//! each with probability proportional to its weight, and send the request to
//! the one with fewer requests in flight per unit of weight; on a tie, the
//! first drawn. With no load the choice therefore follows the weights
//! exactly; under load it steers away from a busy or slow server almost as
//! well as least connections, while looking at two servers instead of all —
//! the algorithm of choice for large pools and for many proxies sharing one
//! pool, where every proxy herding onto "the" least loaded server would
//! overload it.
//!
//! Draws use cumulative weights computed once per configuration (a binary
//! search per draw) and `fastrand`'s thread-local generator: no lock, no
//! allocation. A draw that lands on a server that is down or already tried
//! is redrawn a few times, then the pick falls back to one weighted pass
//! over the available servers, so the weights hold however many are down.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Tried;
use crate::upstream::server::Server;

/// Redraws before falling back to a pass over every server.
const DRAWS: usize = 8;

#[derive(Debug)]
pub(crate) struct PowerOfTwo {
    /// `cumulative[i]` = sum of the weights of servers 0..=i.
    cumulative: Box<[u64]>,
}

impl PowerOfTwo {
    pub(crate) fn new(servers: &[Arc<Server>]) -> PowerOfTwo {
        let mut sum = 0u64;
        let cumulative = servers
            .iter()
            .map(|s| {
                sum += u64::from(s.weight);
                sum
            })
            .collect();
        PowerOfTwo { cumulative }
    }

    pub(crate) fn pick(&self, servers: &[Arc<Server>], tried: Tried) -> Option<usize> {
        let first = self.draw(servers, tried, None)?;
        let Some(second) = self.draw(servers, tried, Some(first)) else { return Some(first) };
        let load = |i: usize| u64::from(servers[i].live.in_flight.load(Ordering::Relaxed));
        let weight = |i: usize| u64::from(servers[i].weight);
        // second wins only if strictly less loaded: load2/w2 < load1/w1.
        if load(second) * weight(first) < load(first) * weight(second) {
            Some(second)
        } else {
            Some(first)
        }
    }

    /// One server, available, not tried and not `except`, with probability ∝ weight.
    fn draw(&self, servers: &[Arc<Server>], tried: Tried, except: Option<usize>) -> Option<usize> {
        let total = *self.cumulative.last()?;
        if total == 0 {
            return None;
        }
        let usable = |i: usize| Some(i) != except && !tried.contains(i) && servers[i].is_available();
        for _ in 0..DRAWS {
            let r = fastrand::u64(..total);
            let i = self.cumulative.partition_point(|&c| c <= r);
            if usable(i) {
                return Some(i);
            }
        }
        // Many servers unusable: one weighted reservoir pass over the rest.
        let mut chosen = None;
        let mut seen = 0u64;
        for (i, server) in servers.iter().enumerate() {
            let w = u64::from(server.weight);
            if w > 0 && usable(i) {
                seen += w;
                if fastrand::u64(..seen) < w {
                    chosen = Some(i);
                }
            }
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::server::{test_servers, InFlight};
    use std::collections::VecDeque;

    fn servers(weights: &[u32]) -> Vec<Arc<Server>> {
        test_servers(weights, 9100)
    }

    fn shares(counts: &[u32]) -> Vec<f64> {
        let total: u32 = counts.iter().sum();
        counts.iter().map(|&c| f64::from(c) / f64::from(total)).collect()
    }

    /// Largest gap between the observed share and the weight's share, in percentage points.
    fn worst_error(counts: &[u32], weights: &[u32]) -> f64 {
        let total_w: u32 = weights.iter().sum();
        shares(counts)
            .iter()
            .zip(weights)
            .map(|(s, &w)| (s - f64::from(w) / f64::from(total_w)).abs() * 100.0)
            .fold(0.0, f64::max)
    }

    #[test]
    fn ten_thousand_idle_picks_follow_weights() {
        let weights = [5, 3, 2, 0];
        let s = servers(&weights);
        let p = PowerOfTwo::new(&s);
        let mut counts = [0u32; 4];
        for _ in 0..10_000 {
            counts[p.pick(&s, Tried::default()).unwrap()] += 1;
        }
        assert_eq!(counts[3], 0);
        let err = worst_error(&counts, &weights);
        eprintln!("idle picks {counts:?}, worst error {err:.2} points");
        assert!(err < 2.0, "{counts:?}");
    }

    #[test]
    fn ten_thousand_picks_under_load_follow_weights() {
        // 16 requests always in flight, each finishing after a random number of
        // later picks: in-flight balancing must still give each server its weight's share.
        let weights = [5, 3, 2];
        let s = servers(&weights);
        let p = PowerOfTwo::new(&s);
        let mut counts = [0u32; 3];
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        for _ in 0..10_000 {
            let i = p.pick(&s, Tried::default()).unwrap();
            counts[i] += 1;
            in_flight.push_back(InFlight::new(s[i].clone()));
            if in_flight.len() > 16 {
                let done = fastrand::usize(..in_flight.len());
                in_flight.remove(done);
            }
        }
        let err = worst_error(&counts, &weights);
        eprintln!("loaded picks {counts:?}, worst error {err:.2} points");
        assert!(err < 5.0, "{counts:?}");
    }

    #[test]
    fn busier_server_loses_the_duel() {
        let s = servers(&[1, 1]);
        s[0].live.in_flight.store(5, Ordering::Relaxed);
        let p = PowerOfTwo::new(&s);
        for _ in 0..100 {
            assert_eq!(p.pick(&s, Tried::default()), Some(1));
        }
    }

    #[test]
    fn down_and_tried_servers_are_never_picked() {
        let s = servers(&[10, 1, 1, 1]);
        s[0].set_healthy(false);
        let p = PowerOfTwo::new(&s);
        let mut tried = Tried::default();
        tried.insert(1);
        let mut counts = [0u32; 4];
        for _ in 0..2_000 {
            counts[p.pick(&s, tried).unwrap()] += 1;
        }
        assert_eq!((counts[0], counts[1]), (0, 0));
        assert!(counts[2] > 800 && counts[3] > 800, "{counts:?}");
        tried.insert(2);
        tried.insert(3);
        assert_eq!(p.pick(&s, tried), None);
    }
}
