//! Least connections: the server with the fewest requests in flight per unit
//! of weight (in-flight / weight, compared by cross-multiplying, no division).
//! Servers that tie — all of them when traffic is light and sequential — are
//! chosen between at random in proportion to their weight, so equal servers
//! share evenly and weights still hold at low load.
//!
//! One pass over the servers per pick, reading one atomic each; no state of
//! its own, no lock, no allocation. Choose it when request durations vary a
//! lot (slow reports beside fast pages, long polls): a slow server
//! accumulates requests in flight and is passed over until it catches up.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Tried;
use crate::upstream::server::Server;

#[derive(Debug, Default)]
pub(crate) struct LeastConnections;

impl LeastConnections {
    pub(crate) fn pick(&self, servers: &[Arc<Server>], tried: Tried) -> Option<usize> {
        let mut best: Option<(usize, u64, u64)> = None; // (index, in flight, weight)
        let mut tied_weight = 0u64;
        for (i, server) in servers.iter().enumerate() {
            if tried.contains(i) || !server.is_available() {
                continue;
            }
            let load = u64::from(server.live.in_flight.load(Ordering::Relaxed));
            let weight = u64::from(server.weight);
            match best {
                None => {
                    best = Some((i, load, weight));
                    tied_weight = weight;
                }
                Some((_, best_load, best_weight)) => match (load * best_weight).cmp(&(best_load * weight)) {
                    std::cmp::Ordering::Less => {
                        best = Some((i, load, weight));
                        tied_weight = weight;
                    }
                    std::cmp::Ordering::Equal => {
                        // Weighted reservoir sampling over the tied servers.
                        tied_weight += weight;
                        if fastrand::u64(..tied_weight) < weight {
                            best = Some((i, load, weight));
                        }
                    }
                    std::cmp::Ordering::Greater => {}
                },
            }
        }
        best.map(|(i, _, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::server::test_servers;

    fn servers(weights: &[u32]) -> Vec<Arc<Server>> {
        test_servers(weights, 9000)
    }

    #[test]
    fn fewest_in_flight_wins() {
        let s = servers(&[1, 1, 1]);
        s[0].live.in_flight.store(3, Ordering::Relaxed);
        s[1].live.in_flight.store(1, Ordering::Relaxed);
        s[2].live.in_flight.store(2, Ordering::Relaxed);
        for _ in 0..100 {
            assert_eq!(LeastConnections.pick(&s, Tried::default()), Some(1));
        }
    }

    #[test]
    fn in_flight_is_divided_by_weight() {
        let s = servers(&[4, 1]);
        s[0].live.in_flight.store(3, Ordering::Relaxed); // 0.75 per weight
        s[1].live.in_flight.store(1, Ordering::Relaxed); // 1 per weight
        assert_eq!(LeastConnections.pick(&s, Tried::default()), Some(0));
    }

    #[test]
    fn ties_share_by_weight() {
        let s = servers(&[3, 1, 0]);
        let mut counts = [0u32; 3];
        for _ in 0..10_000 {
            counts[LeastConnections.pick(&s, Tried::default()).unwrap()] += 1;
        }
        assert_eq!(counts[2], 0, "weight 0 drains");
        let share = f64::from(counts[0]) / 10_000.0;
        assert!((0.72..=0.78).contains(&share), "{counts:?}");
    }

    #[test]
    fn tried_and_down_are_skipped() {
        let s = servers(&[1, 1, 1]);
        s[1].set_healthy(false);
        let mut tried = Tried::default();
        tried.insert(0);
        assert_eq!(LeastConnections.pick(&s, tried), Some(2));
        tried.insert(2);
        assert_eq!(LeastConnections.pick(&s, tried), None);
    }
}
