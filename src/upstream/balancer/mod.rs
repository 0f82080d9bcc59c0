//! Choosing a server for a request. Every algorithm sits behind [`Balancer`]:
//! adding one is a new file and a new arm here, nothing else.

mod smooth_wrr;

pub use smooth_wrr::SmoothWeightedRoundRobin;

use std::sync::Arc;

use super::server::Server;

/// Servers already tried for this request, so a retry never returns to one.
/// Indices into the upstream's server list; upstreams of more than 64 servers
/// stop excluding past the 64th, which only weakens the no-repeat rule there.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tried(u64);

impl Tried {
    pub fn contains(&self, index: usize) -> bool {
        index < 64 && self.0 & (1 << index) != 0
    }
    pub fn insert(&mut self, index: usize) {
        if index < 64 {
            self.0 |= 1 << index;
        }
    }
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }
}

#[derive(Debug)]
pub enum Balancer {
    WeightedRoundRobin(SmoothWeightedRoundRobin),
}

impl Balancer {
    pub fn new(kind: &crate::config::Balance, servers: &[Arc<Server>]) -> Balancer {
        // The other algorithms arrive with the resilience work; until then they
        // fall back to smooth weighted round robin, which honours the same weights.
        let _ = kind;
        Balancer::WeightedRoundRobin(SmoothWeightedRoundRobin::new(servers))
    }

    /// An index into `servers` of an available server not yet tried, or None.
    pub fn pick(&self, servers: &[Arc<Server>], tried: Tried) -> Option<usize> {
        match self {
            Balancer::WeightedRoundRobin(b) => b.pick(servers, tried),
        }
    }
}
