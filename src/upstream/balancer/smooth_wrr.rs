//! Smooth weighted round robin, exactly as nginx defines it
//! (`ngx_http_upstream_round_robin.c`): each turn every server's current
//! weight grows by its weight, the largest is chosen and loses the total.
//! Weights 5,1,1 give a,a,b,a,c,a,a — spread out, never bursts.
//!
//! The sequence depends only on the weights, so it is computed once per
//! configuration and walked with one atomic counter: the hot path takes no
//! lock and reproduces nginx's order exactly. Servers that are down are
//! skipped in place, which hands their turns to the next servers in the
//! sequence, again spread out.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::Tried;
use crate::upstream::server::Server;

#[derive(Debug)]
pub(crate) struct SmoothWeightedRoundRobin {
    /// One full period of the smooth sequence (length = sum of weights).
    schedule: Box<[u32]>,
    cursor: AtomicUsize,
}

impl SmoothWeightedRoundRobin {
    pub(crate) fn new(servers: &[Arc<Server>]) -> Self {
        let weights: Vec<u32> = servers.iter().map(|s| s.weight).collect();
        SmoothWeightedRoundRobin { schedule: smooth_sequence(&weights).into_boxed_slice(), cursor: AtomicUsize::new(0) }
    }

    pub(crate) fn pick(&self, servers: &[Arc<Server>], tried: Tried) -> Option<usize> {
        let len = self.schedule.len();
        if len == 0 {
            return None;
        }
        for _ in 0..len {
            let turn = self.cursor.fetch_add(1, Ordering::Relaxed) % len;
            let index = self.schedule[turn] as usize;
            if !tried.contains(index) && servers[index].is_available() {
                return Some(index);
            }
        }
        None
    }
}

/// nginx's smooth weighted round robin, run for one period.
pub(super) fn smooth_sequence(weights: &[u32]) -> Vec<u32> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut sequence = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, &w) in weights.iter().enumerate() {
            current[i] += i64::from(w);
            if w > 0 && (weights[best] == 0 || current[i] > current[best]) {
                best = i;
            }
        }
        current[best] -= total;
        sequence.push(best as u32);
    }
    sequence
}

#[cfg(test)]
mod tests {
    use super::smooth_sequence;

    #[test]
    fn nginx_order_for_5_1_1() {
        assert_eq!(smooth_sequence(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn zero_weight_never_chosen() {
        let seq = smooth_sequence(&[2, 0, 1]);
        assert_eq!(seq.len(), 3);
        assert!(!seq.contains(&1));
    }

    #[test]
    fn equal_weights_alternate() {
        assert_eq!(smooth_sequence(&[1, 1, 1]), vec![0, 1, 2]);
    }
}
