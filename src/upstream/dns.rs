//! DNS re-resolution for servers given by a host name (DNS-based discovery,
//! e.g. a Kubernetes headless service whose name lists one A record per pod).
//!
//! Each such server has a task, owned by its upstream and stopped with it,
//! that resolves the name at start and then every [`REFRESH`]. New
//! connections go round-robin over the latest addresses, so a new address
//! joins at once. A vanished address drains: its idle pooled connections are
//! closed, busy ones finish their request and are not reused. A failed
//! lookup keeps the last good addresses (a DNS outage must not empty a pool
//! of servers that still work) and is logged once until lookups work again.
//!
//! The lookup is the system resolver (`getaddrinfo`, through tokio's blocking
//! pool), so `/etc/hosts` and the platform's resolver settings apply.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::server::Server;

/// How often names are looked up again.
pub const REFRESH: Duration = Duration::from_secs(30);

/// Resolves `server`'s name now and every `every` after, until aborted.
pub async fn resolve_loop(server: Arc<Server>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        match lookup(&server).await {
            Ok(addrs) => {
                if failing {
                    tracing::info!(server = %server.label, "DNS lookups work again");
                    failing = false;
                }
                apply(&server, addrs);
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(server = %server.label, error = %e, "DNS lookup failed: keeping the last addresses");
                    failing = true;
                }
            }
        }
    }
}

/// One lookup, applied if it worked (used when a connection is needed before the first tick).
pub async fn refresh(server: &Server) {
    match lookup(server).await {
        Ok(addrs) => apply(server, addrs),
        Err(e) => tracing::debug!(server = %server.label, error = %e, "DNS lookup failed"),
    }
}

async fn lookup(server: &Server) -> std::io::Result<Vec<SocketAddr>> {
    let mut addrs: Vec<SocketAddr> =
        tokio::net::lookup_host((server.url.host.as_str(), server.url.port)).await?.collect();
    addrs.sort_unstable();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no addresses"));
    }
    Ok(addrs)
}

/// Installs a new address list (sorted, deduplicated), logs what changed and
/// drains idle connections to addresses that left.
pub fn apply(server: &Server, addrs: Vec<SocketAddr>) {
    let old = server.addrs();
    if *old == addrs {
        return;
    }
    let added: Vec<&SocketAddr> = addrs.iter().filter(|a| !old.contains(a)).collect();
    let removed: Vec<&SocketAddr> = old.iter().filter(|a| !addrs.contains(a)).collect();
    tracing::info!(server = %server.label, ?added, ?removed, "server addresses changed");
    server.set_addrs(addrs.clone());
    if !removed.is_empty() {
        server.pool.drain_except(&addrs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PassiveConfig;
    use crate::upstream::server::test_server;

    #[tokio::test]
    async fn localhost_resolves_to_loopback() {
        let server = test_server("localhost:8080", 1, PassiveConfig::default());
        assert!(server.addrs().is_empty());
        refresh(&server).await;
        let addrs = server.addrs();
        assert!(addrs.contains(&"127.0.0.1:8080".parse().unwrap()), "{addrs:?}");
    }

    #[tokio::test]
    async fn the_loop_resolves_at_once() {
        let server = test_server("localhost:8081", 1, PassiveConfig::default());
        let task = tokio::spawn(resolve_loop(server.clone(), Duration::from_secs(3600)));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while server.addrs().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "never resolved");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        task.abort();
    }

    #[tokio::test]
    async fn vanished_addresses_drain_and_new_ones_join() {
        // Two real listeners standing in for two pods behind one name.
        let l1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (a1, a2) = (l1.local_addr().unwrap(), l2.local_addr().unwrap());
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                tokio::select! {
                    Ok((s, _)) = l1.accept() => held.push(s),
                    Ok((s, _)) = l2.accept() => held.push(s),
                }
            }
        });
        let server = test_server("pods.invalid:80", 1, PassiveConfig::default());
        apply(&server, vec![a1]);
        let first = crate::upstream::connect::connect_own(&server, Duration::from_secs(2)).await.unwrap();
        assert_eq!(first.addr, a1);
        server.pool.checkin(first);
        assert_eq!(server.pool.idle_count(), 1);

        // a2 joins, a1 leaves: the idle connection to a1 is closed, new connections go to a2.
        apply(&server, vec![a2]);
        assert_eq!(*server.addrs(), [a2]);
        assert_eq!(server.pool.idle_count(), 0);
        assert!(!server.is_current(a1));
        for _ in 0..3 {
            let c = crate::upstream::connect::connect_http1(&server, Duration::from_secs(2)).await.unwrap();
            assert_eq!(c.addr, a2);
        }
        // Both: connections alternate.
        apply(&server, vec![a1, a2]);
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(crate::upstream::connect::connect_http1(&server, Duration::from_secs(2)).await.unwrap().addr);
        }
        assert!(seen.contains(&a1) && seen.contains(&a2), "{seen:?}");
        hold.abort();
    }
}
