//! Listening on `[::]` for IPv4 clients too. An absent `listen:` section means
//! `[::]:443` and `[::]:80`; porter binds them with `IPV6_V6ONLY` off, so IPv4
//! clients arrive as v4-mapped addresses on the same socket whatever the host's
//! `net.ipv6.bindv6only` says (nginx needs `ipv6only=off` for the same). On a
//! host without IPv6 (kernel booted with `ipv6.disable=1`, some containers) the
//! socket cannot be made, and porter listens on `0.0.0.0` instead, saying so.

use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::{TcpListener, TcpSocket};

/// What `TcpListener::bind` uses too.
const BACKLOG: u32 = 1024;

/// Binds `address`; the IPv6 wildcard (`[::]`) dual-stack, falling back to IPv4's
/// wildcard where the host has no IPv6.
pub(crate) async fn bind(address: SocketAddr, what: &str) -> std::io::Result<TcpListener> {
    if !(address.is_ipv6() && address.ip().is_unspecified()) {
        return TcpListener::bind(address).await;
    }
    match bind_v6_any(address) {
        Err(e) if no_ipv6(&e) => {
            let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, address.port()));
            tracing::warn!(
                requested = %address,
                listening = %v4,
                error = %e,
                "no IPv6 on this host: listening for {what} on IPv4 only"
            );
            TcpListener::bind(v4).await
        }
        other => other,
    }
}

fn bind_v6_any(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = v6_socket()?;
    socket.bind(address)?;
    socket.listen(BACKLOG)
}

/// An IPv6 socket that will take IPv4 clients too once bound to `[::]`.
fn v6_socket() -> std::io::Result<TcpSocket> {
    let socket = TcpSocket::new_v6()?;
    socket.set_reuseaddr(true)?;
    socket2::SockRef::from(&socket).set_only_v6(false)?;
    Ok(socket)
}

pub(super) fn no_ipv6(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT | libc::EADDRNOTAVAIL))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The wildcard itself is not bound in tests (they bind loopback only, and binding a
    // specific IPv6 address makes the kernel set V6ONLY anyway): the socket `[::]` is
    // bound with is checked before its bind.
    #[tokio::test]
    async fn v6_sockets_are_made_with_v6only_off() {
        match v6_socket() {
            Ok(socket) => assert!(!socket2::SockRef::from(&socket).only_v6().unwrap()),
            Err(e) if no_ipv6(&e) => eprintln!("SKIPPED: no IPv6 on this host ({e})"),
            Err(e) => panic!("{e}"),
        }
        // Anything but the IPv6 wildcard is bound as given.
        let v4 = bind("127.0.0.1:0".parse().unwrap(), "test").await.unwrap();
        assert!(v4.local_addr().unwrap().is_ipv4());
    }
}
