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
//! The lookup is hickory's stub resolver, configured from `/etc/resolv.conf`
//! (name servers, `search`, `ndots`, `timeout`, `attempts`, `edns0`) and
//! `/etc/hosts`, not the C library's `getaddrinfo`: the same behaviour in
//! every build, and in particular a retry over TCP when a UDP answer comes
//! back truncated. musl before 1.2.4, which the static image is linked with,
//! has no such fallback, so a headless Service with more pods than fit in a
//! 512-byte answer (about 28 IPv4 addresses) would resolve to some or none of
//! them. Where `/etc/resolv.conf` cannot be read, `getaddrinfo` it is.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_resolver::TokioResolver;

use super::server::Server;

/// How often names are looked up again.
pub(crate) const REFRESH: Duration = Duration::from_secs(30);

/// A name resolver: hickory's, or the C library's where the system
/// configuration could not be read.
pub(crate) struct Resolver {
    hickory: Option<TokioResolver>,
}

impl Resolver {
    /// The process's resolver, read from the system configuration once.
    pub(crate) fn system() -> &'static Resolver {
        static SYSTEM: OnceLock<Resolver> = OnceLock::new();
        SYSTEM.get_or_init(|| {
            let built = TokioResolver::builder_tokio().and_then(|mut b| {
                // A and AAAA in parallel, both kept, as getaddrinfo does.
                b.options_mut().ip_strategy = hickory_resolver::config::LookupIpStrategy::Ipv4AndIpv6;
                b.build()
            });
            match built {
                Ok(r) => Resolver { hickory: Some(r) },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the resolver configuration (/etc/resolv.conf): upstream names are resolved with the C library");
                    Resolver { hickory: None }
                }
            }
        })
    }

    /// A resolver that asks only the name server at `addr` (UDP, then TCP when
    /// an answer is truncated) and ignores `/etc/hosts`: tests point it at a
    /// DNS server of their own.
    #[cfg(test)]
    pub(crate) fn with_name_server(addr: SocketAddr) -> Resolver {
        use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig};
        let mut server = NameServerConfig::udp_and_tcp(addr.ip());
        for connection in &mut server.connections {
            connection.port = addr.port();
        }
        let provider = hickory_resolver::net::runtime::TokioRuntimeProvider::default();
        let mut builder = TokioResolver::builder_with_config(ResolverConfig::from_name_servers(vec![server]), provider);
        let options = builder.options_mut();
        options.use_hosts_file = ResolveHosts::Never;
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        options.cache_size = 0;
        Resolver { hickory: Some(builder.build().expect("a resolver for one name server")) }
    }

    /// The addresses of `host` with `port`, sorted and deduplicated; an error
    /// when there are none.
    pub(crate) async fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let mut addrs: Vec<SocketAddr> = match &self.hickory {
            Some(resolver) => {
                let found = resolver.lookup_ip(host).await.map_err(io::Error::other)?;
                found.iter().map(|ip| SocketAddr::new(ip, port)).collect()
            }
            None => tokio::net::lookup_host((host, port)).await?.collect(),
        };
        addrs.sort_unstable();
        addrs.dedup();
        if addrs.is_empty() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "the name has no addresses"));
        }
        Ok(addrs)
    }
}

/// Resolves `server`'s name now and every `every` after, until aborted.
pub(crate) async fn resolve_loop(server: Arc<Server>, every: Duration) {
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
pub(crate) async fn refresh(server: &Server) {
    match lookup(server).await {
        Ok(addrs) => apply(server, addrs),
        Err(e) => tracing::debug!(server = %server.label, error = %e, "DNS lookup failed"),
    }
}

async fn lookup(server: &Server) -> io::Result<Vec<SocketAddr>> {
    Resolver::system().lookup(&server.url.host, server.url.port).await
}

/// Installs a new address list (sorted, deduplicated), logs what changed and
/// drains idle connections to addresses that left.
pub(crate) fn apply(server: &Server, addrs: Vec<SocketAddr>) {
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

    /// 40 A records: 12 + 15 + 40 * 16 = 667 bytes, more than the 512 a UDP
    /// answer without EDNS may carry (about 30 fit).
    const MANY: u8 = 40;

    /// A DNS server on 127.0.0.1 (one port, UDP and TCP) that knows one name,
    /// `many.test`, with [`MANY`] A records. Over UDP it answers as a server
    /// bound by 512 bytes does: the records that fit, with TC=1. Over TCP,
    /// all of them. Returns its address and a count of the TCP queries.
    async fn truncating_dns_server() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // UDP and TCP on one port: take a UDP port, then try its TCP twin.
        let (udp, tcp) = loop {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            if let Ok(tcp) = tokio::net::TcpListener::bind(udp.local_addr().unwrap()).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let tcp_queries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = tcp_queries.clone();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                tokio::select! {
                    Ok((n, from)) = udp.recv_from(&mut buf) => {
                        if let Some(answer) = dns_answer(&buf[..n], Some(512)) {
                            let _ = udp.send_to(&answer, from).await;
                        }
                    }
                    Ok((mut conn, _)) = tcp.accept() => {
                        let counted = counted.clone();
                        tokio::spawn(async move {
                            // RFC 1035 4.2.2: each message behind a two-byte length.
                            loop {
                                let Ok(len) = conn.read_u16().await else { return };
                                let mut query = vec![0; usize::from(len)];
                                if conn.read_exact(&mut query).await.is_err() {
                                    return;
                                }
                                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                let Some(answer) = dns_answer(&query, None) else { return };
                                let mut framed = (answer.len() as u16).to_be_bytes().to_vec();
                                framed.extend_from_slice(&answer);
                                if conn.write_all(&framed).await.is_err() {
                                    return;
                                }
                            }
                        });
                    }
                }
            }
        });
        (addr, tcp_queries, task)
    }

    /// The answer to one query: `many.test` A gets 127.0.1.1 ..= 127.0.1.MANY
    /// (as many as fit in `limit` bytes, with TC=1 if not all do), its AAAA
    /// no records, any other name NXDOMAIN.
    fn dns_answer(query: &[u8], limit: Option<usize>) -> Option<Vec<u8>> {
        // The question: labels from byte 12 up to the root label, then type and class.
        let mut end = 12;
        let mut name = String::new();
        while *query.get(end)? != 0 {
            let len = usize::from(query[end]);
            name.push_str(&String::from_utf8_lossy(query.get(end + 1..end + 1 + len)?).to_ascii_lowercase());
            name.push('.');
            end += 1 + len;
        }
        let question = query.get(12..end + 5)?;
        let qtype = u16::from_be_bytes([query[end + 1], query[end + 2]]);
        let known = name == "many.test.";
        let records: Vec<[u8; 16]> = if known && qtype == 1 {
            (1..=MANY)
                .map(|i| {
                    // Name: a pointer to the question's (offset 12); A, IN, TTL 30 s, 4 bytes.
                    [0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 127, 0, 1, i]
                })
                .collect()
        } else {
            Vec::new()
        };
        let room = limit.map_or(records.len(), |limit| (limit - 12 - question.len()) / 16);
        let truncated = records.len() > room;
        let kept = &records[..records.len().min(room)];
        let mut flags: u16 = 0x8180 | u16::from(query[2] & 1) << 8; // QR, RD as asked, RA
        if truncated {
            flags |= 0x0200; // TC
        }
        if !known {
            flags |= 3; // NXDOMAIN
        }
        let mut answer = Vec::with_capacity(512);
        answer.extend_from_slice(&query[..2]);
        answer.extend_from_slice(&flags.to_be_bytes());
        answer.extend_from_slice(&[0, 1, 0, kept.len() as u8, 0, 0, 0, 0]);
        answer.extend_from_slice(question);
        kept.iter().for_each(|r| answer.extend_from_slice(r));
        Some(answer)
    }

    #[tokio::test]
    async fn a_truncated_udp_answer_is_asked_again_over_tcp() {
        let (dns, tcp_queries, task) = truncating_dns_server().await;
        let resolver = Resolver::with_name_server(dns);
        let server = test_server("many.test:8080", 1, PassiveConfig::default());
        apply(&server, resolver.lookup(&server.url.host, server.url.port).await.unwrap());
        let expected: Vec<SocketAddr> = (1..=MANY).map(|i| SocketAddr::from(([127, 0, 1, i], 8080))).collect();
        assert_eq!(*server.addrs(), expected, "every address, not the ~30 of the truncated UDP answer");
        assert!(tcp_queries.load(std::sync::atomic::Ordering::SeqCst) >= 1, "asked again over TCP");
        // An unknown name is an error, and the last good addresses stay with the caller.
        assert!(resolver.lookup("nothing.test", 80).await.is_err());
        task.abort();
    }
}
