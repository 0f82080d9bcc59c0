//! Why porter did not start, or refused a reload.

use std::net::SocketAddr;

/// Why porter did not start, or refused a reload (the running configuration stays).
#[derive(Debug)]
pub enum StartError {
    /// A listener could not take its address: which listener, where, and why.
    Bind { what: &'static str, address: BindAddress, cause: std::io::Error },
    /// The configuration cannot run as written (the message names the setting).
    Config(String),
    /// The process could not set up something it needs (the access log's writer,
    /// a socket copy, the HTTP/3 endpoint).
    Runtime(String),
}

/// Where a listener was to listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindAddress {
    Tcp(SocketAddr),
    Udp(SocketAddr),
    /// A socket handed over (systemd socket activation, or an upgrade).
    Inherited,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Bind { what, address, cause } => match address {
                BindAddress::Tcp(addr) => write!(f, "cannot listen for {what} on {addr}: {cause}"),
                BindAddress::Udp(addr) => write!(f, "cannot listen for {what} on UDP {addr}: {cause}"),
                BindAddress::Inherited => write!(f, "cannot listen for {what} on the inherited socket: {cause}"),
            },
            StartError::Config(message) | StartError::Runtime(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Bind { cause, .. } => Some(cause),
            _ => None,
        }
    }
}
