//! Choosing a server for a request. Every algorithm sits behind [`Balancer`]:
//! adding one is a new file and a new arm here, nothing else.
//!
//! | `balance` | picks | choose it when |
//! |---|---|---|
//! | `weighted_round_robin` | in turn, smoothly by weight (nginx's order) | requests cost about the same |
//! | `least_connections` | fewest in flight per weight | request durations vary a lot |
//! | `power_of_two` | better of two weighted random draws | large pools, several proxies in front |
//! | `consistent_hash` | by `hash_on` key on a ring | per-client affinity (caches, sessions) |
//!
//! Every algorithm skips servers that are down (weight 0, failed active
//! checks, passively ejected) and those already tried by the request, and
//! keeps its hot path free of locks and allocation.

mod consistent_hash;
pub(crate) mod key;
mod least_connections;
mod power_of_two;
mod smooth_wrr;

pub(crate) use consistent_hash::ConsistentHash;
pub(crate) use least_connections::LeastConnections;
pub(crate) use power_of_two::PowerOfTwo;
pub(crate) use smooth_wrr::SmoothWeightedRoundRobin;

use std::net::IpAddr;
use std::sync::Arc;

use super::server::Server;
use crate::config::{Balance, HashOn};
use crate::http1::view::RequestFields;

/// Servers already tried for this request, so a retry never returns to one.
/// Indices into the upstream's server list; upstreams of more than 64 servers
/// stop excluding past the 64th, which only weakens the no-repeat rule there.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Tried(u64);

impl Tried {
    pub(crate) fn contains(&self, index: usize) -> bool {
        index < 64 && self.0 & (1 << index) != 0
    }
    pub(crate) fn insert(&mut self, index: usize) {
        if index < 64 {
            self.0 |= 1 << index;
        }
    }
}

#[derive(Debug)]
pub(crate) enum Balancer {
    WeightedRoundRobin(SmoothWeightedRoundRobin),
    LeastConnections(LeastConnections),
    PowerOfTwo(PowerOfTwo),
    ConsistentHash(ConsistentHash),
}

impl Balancer {
    pub(crate) fn new(kind: Balance, hash_on: Option<&HashOn>, servers: &[Arc<Server>]) -> Balancer {
        match kind {
            Balance::WeightedRoundRobin => Balancer::WeightedRoundRobin(SmoothWeightedRoundRobin::new(servers)),
            Balance::LeastConnections => Balancer::LeastConnections(LeastConnections),
            Balance::PowerOfTwo => Balancer::PowerOfTwo(PowerOfTwo::new(servers)),
            // Validation guarantees hash_on with consistent_hash; client_ip is the safe default.
            Balance::ConsistentHash => {
                Balancer::ConsistentHash(ConsistentHash::new(hash_on.cloned().unwrap_or(HashOn::ClientIp), servers))
            }
        }
    }

    /// The request's hash key for balancers that use one (0 for the others,
    /// which then skip looking at the request).
    #[inline]
    pub(crate) fn key(&self, headers: RequestFields<'_>, client: IpAddr) -> u64 {
        match self {
            Balancer::ConsistentHash(ch) => key::request_key(&ch.hash_on, headers, client),
            _ => 0,
        }
    }

    /// An index into `servers` of an available server not yet tried, or None.
    #[inline]
    pub(crate) fn pick(&self, servers: &[Arc<Server>], tried: Tried, key: u64) -> Option<usize> {
        match self {
            Balancer::WeightedRoundRobin(b) => b.pick(servers, tried),
            Balancer::LeastConnections(b) => b.pick(servers, tried),
            Balancer::PowerOfTwo(b) => b.pick(servers, tried),
            Balancer::ConsistentHash(b) => b.pick(servers, tried, key),
        }
    }

    pub(crate) fn kind(&self) -> Balance {
        match self {
            Balancer::WeightedRoundRobin(_) => Balance::WeightedRoundRobin,
            Balancer::LeastConnections(_) => Balance::LeastConnections,
            Balancer::PowerOfTwo(_) => Balance::PowerOfTwo,
            Balancer::ConsistentHash(_) => Balance::ConsistentHash,
        }
    }
}
