//! Listening sockets porter did not bind itself, so that a restart or an upgrade
//! refuses no connection (docs/configuration.md, Command line): the socket stays open in the kernel the whole
//! time and only the process accepting from it changes.
//!
//! Two sources, read once by `main` before anything else opens a descriptor:
//! - systemd socket activation: `LISTEN_PID` (this process), `LISTEN_FDS` (how many,
//!   from fd 3) and `LISTEN_FDNAMES` (`FileDescriptorName=` of the socket unit);
//! - a porter handing over to its successor (`src/handover.rs`, the layer above):
//!   `PORTER_UPGRADE_FDS=https:7,http:8,admin:9`, `PORTER_UPGRADE_READY=10` and
//!   `PORTER_UPGRADE_PARENT` (the old process, which must be our parent: the
//!   variables mean nothing to a grandchild).
//!
//! A listener of the configuration takes the socket with its name (`https`,
//! `http`, `admin`); a socket without one of those names (a socket unit with
//! several `ListenStream=` names them all after itself) is matched by its address.
//! HTTP/3's UDP socket (`h3`; a `ListenDatagram=` of the socket unit) is taken the
//! same way, from the UDP sockets only.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// The environment variables of a hand-over (set by `src/handover.rs`).
pub(crate) const UPGRADE_FDS: &str = "PORTER_UPGRADE_FDS";
pub(crate) const UPGRADE_READY: &str = "PORTER_UPGRADE_READY";
pub(crate) const UPGRADE_PARENT: &str = "PORTER_UPGRADE_PARENT";

/// Where the sockets came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Systemd,
    Upgrade,
}

impl Source {
    fn describe(self) -> &'static str {
        match self {
            Source::Systemd => "systemd socket activation",
            Source::Upgrade => "the previous porter process",
        }
    }
}

#[derive(Debug)]
struct Socket {
    name: String,
    address: SocketAddr,
    listener: std::net::TcpListener,
}

#[derive(Debug)]
struct Datagram {
    name: String,
    address: SocketAddr,
    socket: std::net::UdpSocket,
}

/// The sockets handed to this process; [`Inherited::take`] gives them to the listeners.
#[derive(Debug, Default)]
pub struct Inherited {
    source: Option<Source>,
    sockets: Vec<Socket>,
    /// UDP sockets (HTTP/3), apart: a TCP listener never takes one, nor the other way round.
    datagrams: Vec<Datagram>,
    /// The hand-over's readiness channel back to the old process.
    ready: Option<std::os::unix::net::UnixStream>,
}

impl Inherited {
    /// No inherited sockets: every listener binds its address.
    pub fn none() -> Inherited {
        Inherited::default()
    }

    /// Reads the environment of this process. Call once: the descriptors it names
    /// become owned by the result (a second call would own them twice).
    pub fn from_environment() -> Result<Inherited, String> {
        if let Some(fds) = std::env::var_os(UPGRADE_FDS) {
            let parent = std::env::var(UPGRADE_PARENT).ok().and_then(|p| p.parse::<u32>().ok());
            if parent == Some(std::os::unix::process::parent_id()) {
                let fds = fds.to_str().ok_or(format!("{UPGRADE_FDS} is not text"))?.to_string();
                return Inherited::from_upgrade(&fds);
            }
            tracing::debug!("{UPGRADE_FDS} set by a process other than our parent: ignored");
        }
        let fds = systemd_fds().map_err(|e| format!("systemd socket activation: {e}"))?;
        if fds.is_empty() {
            return Ok(Inherited::none());
        }
        let mut inherited = Inherited { source: Some(Source::Systemd), ..Inherited::default() };
        for (fd, name) in fds {
            let fd = crate::sys::take_inherited(fd).map_err(|e| format!("systemd socket activation: {e}"))?;
            inherited.add(name, fd).map_err(|e| format!("systemd socket activation: {e}"))?;
        }
        Ok(inherited)
    }

    /// `https:7,http:8,admin:9` from the old process, and the readiness descriptor.
    fn from_upgrade(fds: &str) -> Result<Inherited, String> {
        let mut inherited = Inherited { source: Some(Source::Upgrade), ..Inherited::default() };
        for entry in fds.split(',').filter(|e| !e.is_empty()) {
            let (name, fd) = entry.split_once(':').ok_or(format!("{UPGRADE_FDS}: {entry:?} is not NAME:FD"))?;
            let fd = open_fd(fd).map_err(|e| format!("{UPGRADE_FDS}: {entry:?}: {e}"))?;
            inherited.add(name.to_string(), fd).map_err(|e| format!("{UPGRADE_FDS}: {entry:?}: {e}"))?;
        }
        let ready = std::env::var(UPGRADE_READY).map_err(|_| format!("{UPGRADE_FDS} without {UPGRADE_READY}"))?;
        let ready = open_fd(&ready).map_err(|e| format!("{UPGRADE_READY}: {e}"))?;
        inherited.ready = Some(std::os::unix::net::UnixStream::from(ready));
        Ok(inherited)
    }

    fn add(&mut self, name: String, fd: OwnedFd) -> Result<(), String> {
        if is_inet_udp(&fd) {
            let socket = std::net::UdpSocket::from(fd);
            socket.set_nonblocking(true).map_err(|e| e.to_string())?;
            let address = socket.local_addr().map_err(|e| e.to_string())?;
            self.datagrams.push(Datagram { name, address, socket });
            return Ok(());
        }
        if !is_listening_tcp(&fd) {
            return Err(format!("fd {} ({name}) is neither a listening TCP socket nor a UDP one", fd.as_raw_fd()));
        }
        let listener = std::net::TcpListener::from(fd);
        // systemd hands sockets over blocking; tokio needs them non-blocking.
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        self.sockets.push(Socket { name, address, listener });
        Ok(())
    }

    /// True when this process took over from an old porter (which waits for [`Inherited::ready`]).
    pub fn is_upgrade(&self) -> bool {
        self.source == Some(Source::Upgrade)
    }

    /// The inherited socket for listener `name` configured at `configured`, if one
    /// fits: the socket of that name (from the old porter only at the same address:
    /// a changed address is bound anew), else an unnamed one at the configured
    /// address (`0.0.0.0:P` and `[::]:P` are the same "every address" here).
    pub fn take(&mut self, name: &str, configured: SocketAddr) -> Option<std::net::TcpListener> {
        let source = self.source?;
        let by_name = self
            .sockets
            .iter()
            .position(|s| s.name == name && (source == Source::Systemd || same_address(configured, s.address)));
        let unnamed = |s: &Socket| !matches!(s.name.as_str(), "https" | "http" | "admin");
        // The address itself first; then, from systemd, the socket unit's choice of
        // address for the same port (`127.0.0.1:443` there, `0.0.0.0:443` here, or the
        // other way round), which porter could not bind beside it anyway.
        let by_address = |loose: bool| {
            self.sockets.iter().position(|s| {
                unnamed(s)
                    && (same_address(configured, s.address)
                        || (loose && source == Source::Systemd && same_port_one_wildcard(configured, s.address)))
            })
        };
        let index = by_name.or_else(|| by_address(false)).or_else(|| by_address(true))?;
        let socket = self.sockets.remove(index);
        if socket.address != configured {
            tracing::info!(
                listener = name, configured = %configured, address = %socket.address,
                "listen.{name}: the inherited socket's address is the one that counts"
            );
        }
        tracing::info!(listener = name, address = %socket.address, "listen.{name}: socket from {}", source.describe());
        Some(socket.listener)
    }

    /// The inherited UDP socket for HTTP/3 on the https address `configured`: the one
    /// named `h3` (from the old porter only at the same address), else one at that
    /// address (from systemd, also the same port with one side the wildcard).
    pub fn take_udp(&mut self, configured: SocketAddr) -> Option<std::net::UdpSocket> {
        let source = self.source?;
        let fits = |s: &Datagram, loose: bool| {
            same_address(configured, s.address)
                || (loose && source == Source::Systemd && same_port_one_wildcard(configured, s.address))
        };
        let index = self
            .datagrams
            .iter()
            .position(|s| s.name == "h3" && (source == Source::Systemd || fits(s, false)))
            .or_else(|| self.datagrams.iter().position(|s| s.name != "h3" && fits(s, false)))
            .or_else(|| self.datagrams.iter().position(|s| s.name != "h3" && fits(s, true)))?;
        let datagram = self.datagrams.remove(index);
        tracing::info!(address = %datagram.address, "HTTP/3: UDP socket from {}", source.describe());
        Some(datagram.socket)
    }

    /// Closes the sockets no listener took, with a warning naming each.
    pub fn close_unused(&mut self) {
        for socket in self.sockets.drain(..) {
            tracing::warn!(
                name = %socket.name, address = %socket.address,
                "an inherited socket matches no listener of the configuration: closed"
            );
        }
        for datagram in self.datagrams.drain(..) {
            tracing::warn!(
                name = %datagram.name, address = %datagram.address,
                "an inherited UDP socket matches no HTTP/3 listener (listen.http3 with listen.https): closed"
            );
        }
    }

    /// Tells the old process that this one serves (its listeners accept): the old one
    /// stops accepting, drains and exits. Nothing to do when not a hand-over.
    pub fn ready(&mut self) -> std::io::Result<()> {
        use std::io::Write;
        match self.ready.take() {
            Some(mut channel) => channel.write_all(format!("ready {}\n", std::process::id()).as_bytes()),
            None => Ok(()),
        }
    }
}

/// Whether a configured address is served by a socket bound to `actual`: the same
/// address, any port when the configuration says port 0, and the two wildcard
/// addresses taken as one (a systemd `ListenStream=443` is `[::]:443`, dual-stack).
fn same_address(configured: SocketAddr, actual: SocketAddr) -> bool {
    let port = configured.port() == 0 || configured.port() == actual.port();
    let ip = configured.ip() == actual.ip() || (configured.ip().is_unspecified() && actual.ip().is_unspecified());
    port && ip
}

/// The same port, and one of the two addresses the wildcard.
fn same_port_one_wildcard(configured: SocketAddr, actual: SocketAddr) -> bool {
    configured.port() == actual.port() && (configured.ip().is_unspecified() || actual.ip().is_unspecified())
}

/// The descriptors systemd passed (`LISTEN_FDS` from fd 3, for `LISTEN_PID` this
/// process) with their `LISTEN_FDNAMES`, as sd_listen_fds_with_names(3) reads them;
/// none when the variables are absent or name another process.
fn systemd_fds() -> Result<Vec<(RawFd, String)>, String> {
    let var = |name| std::env::var(name).ok();
    let (Some(pid), Some(count)) = (var("LISTEN_PID"), var("LISTEN_FDS")) else { return Ok(Vec::new()) };
    if pid.trim().parse::<u32>().map_err(|_| format!("LISTEN_PID {pid:?} is not a process id"))? != std::process::id() {
        return Ok(Vec::new());
    }
    let count = count.trim().parse::<RawFd>().ok().filter(|n| (0..=1024).contains(n));
    let count = count.ok_or("LISTEN_FDS is not a count of descriptors")?;
    if count == 0 {
        return Ok(Vec::new());
    }
    let names: Vec<String> = match var("LISTEN_FDNAMES") {
        Some(names) => names.split(':').map(String::from).collect(),
        None => vec!["unknown".to_string(); count as usize],
    };
    if names.len() != count as usize {
        return Err(format!("LISTEN_FDNAMES names {} descriptors, LISTEN_FDS {count}", names.len()));
    }
    Ok((3..3 + count).zip(names).collect())
}

/// Takes ownership of the descriptor a hand-over variable names, once.
fn open_fd(text: &str) -> Result<OwnedFd, String> {
    let fd: RawFd = text.trim().parse().map_err(|_| format!("{text:?} is not a descriptor number"))?;
    crate::sys::take_inherited(fd).map_err(|e| e.to_string())
}

/// A UDP socket of an inet family (HTTP/3's).
fn is_inet_udp(fd: &OwnedFd) -> bool {
    let socket = socket2::SockRef::from(fd);
    socket.r#type().is_ok_and(|t| t == socket2::Type::DGRAM) && inet(&socket)
}

/// A TCP socket in the listening state (stream type, listening, an inet family).
fn is_listening_tcp(fd: &OwnedFd) -> bool {
    let socket = socket2::SockRef::from(fd);
    socket.r#type().is_ok_and(|t| t == socket2::Type::STREAM) && socket.is_listener().unwrap_or(false) && inet(&socket)
}

fn inet(socket: &socket2::SockRef<'_>) -> bool {
    socket.domain().is_ok_and(|d| d == socket2::Domain::IPV4 || d == socket2::Domain::IPV6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_match_as_a_socket_unit_binds_them() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(same_address(a("127.0.0.1:8080"), a("127.0.0.1:8080")));
        assert!(!same_address(a("127.0.0.1:8080"), a("127.0.0.1:8081")));
        assert!(same_address(a("127.0.0.1:0"), a("127.0.0.1:40000")));
        assert!(!same_address(a("127.0.0.1:0"), a("127.0.0.2:40000")));
        assert!(same_address(a("0.0.0.0:443"), a("[::]:443")));
        assert!(same_address(a("[::]:443"), a("0.0.0.0:443")));
        assert!(!same_address(a("0.0.0.0:443"), a("127.0.0.1:443")));
        assert!(!same_address(a("127.0.0.1:443"), a("0.0.0.0:443")));
        assert!(same_port_one_wildcard(a("0.0.0.0:443"), a("127.0.0.1:443")));
        assert!(same_port_one_wildcard(a("127.0.0.1:443"), a("[::]:443")));
        assert!(!same_port_one_wildcard(a("127.0.0.1:443"), a("127.0.0.2:443")));
        assert!(!same_port_one_wildcard(a("0.0.0.0:443"), a("[::]:80")));
    }

    fn inherited(source: Source, sockets: &[(&str, &std::net::TcpListener)]) -> Inherited {
        let mut inherited = Inherited { source: Some(source), ..Inherited::default() };
        for (name, listener) in sockets {
            inherited.add(name.to_string(), OwnedFd::from(listener.try_clone().unwrap())).unwrap();
        }
        inherited
    }

    #[test]
    fn a_listener_takes_its_named_socket_else_one_at_its_address() {
        let one = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let two = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (a1, a2) = (one.local_addr().unwrap(), two.local_addr().unwrap());
        let port = |l: Option<std::net::TcpListener>| l.map(|l| l.local_addr().unwrap());

        // systemd: a name wins over the configured address; unnamed ones go by address.
        let mut from_systemd = inherited(Source::Systemd, &[("porter.socket", &one), ("https", &two)]);
        assert_eq!(port(from_systemd.take("https", a1)), Some(a2));
        assert_eq!(port(from_systemd.take("http", "127.0.0.1:1".parse().unwrap())), None);
        assert_eq!(port(from_systemd.take("http", SocketAddr::from(([0, 0, 0, 0], a1.port())))), Some(a1));
        assert!(from_systemd.sockets.is_empty());

        // An upgrade: the named socket only at the same address (a moved listener binds anew).
        let mut from_old = inherited(Source::Upgrade, &[("http", &one), ("admin", &two)]);
        assert_eq!(port(from_old.take("http", a2)), None);
        assert_eq!(port(from_old.take("http", a1)), Some(a1));
        assert_eq!(port(from_old.take("admin", "127.0.0.1:0".parse().unwrap())), Some(a2));

        // Nothing inherited: nothing taken.
        assert!(Inherited::none().take("http", a1).is_none());
    }

    #[test]
    fn only_listening_tcp_sockets_are_taken() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(is_listening_tcp(&OwnedFd::from(listener)));
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp = OwnedFd::from(udp);
        assert!(!is_listening_tcp(&udp));
        assert!(is_inet_udp(&udp));
        let (unix, _) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(!is_listening_tcp(&OwnedFd::from(unix)));
    }
}
