//! Upstreams: named pools of servers, the balancer that picks among them,
//! and the per-server state and connections that requests use.

pub mod balancer;
pub mod connect;
pub mod health;
pub mod pool;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use crate::config::UpstreamConfig;

use balancer::{Balancer, Tried};
use server::Server;

#[derive(Debug)]
pub struct Upstream {
    pub name: Box<str>,
    pub servers: Vec<Arc<Server>>,
    balancer: Balancer,
    pub connect_timeout: Duration,
    pub response_header_timeout: Duration,
    pub retries: u32,
    _health: health::HealthCheckers,
}

impl Upstream {
    pub fn new(name: &str, cfg: &UpstreamConfig) -> Upstream {
        let servers: Vec<Arc<Server>> =
            cfg.servers.iter().map(|s| Arc::new(Server::new(s, &cfg.passive, &cfg.pool))).collect();
        let mut checkers = health::HealthCheckers::default();
        if let Some(check) = &cfg.health_check {
            for server in &servers {
                checkers.spawn(server.clone(), check.clone(), cfg.timeouts.connect);
            }
        }
        Upstream {
            _health: checkers,
            name: name.into(),
            balancer: Balancer::new(&cfg.balance, &servers),
            servers,
            connect_timeout: cfg.timeouts.connect,
            response_header_timeout: cfg.timeouts.response_header,
            retries: cfg.retries,
        }
    }

    pub fn pick(&self, tried: Tried) -> Option<(usize, &Arc<Server>)> {
        let index = self.balancer.pick(&self.servers, tried)?;
        Some((index, &self.servers[index]))
    }
}
