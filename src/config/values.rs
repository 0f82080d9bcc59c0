//! Parsers for the string-typed values of the config: listener addresses,
//! server URLs, route hosts and paths, `hash_on`, TLS versions.
//!
//! Each returns a user-facing message on error; `validate.rs` adds the position.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::schema::{HashOn, Scheme, ServerUrl, TlsVersion};

/// "IP:PORT" or "[IPv6]:PORT". Hostnames are refused: a listener binds an
/// address, and resolving a name at bind time would be a surprise.
pub(crate) fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let example = "like \"0.0.0.0:443\" or \"[::]:443\"";
    match text.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => return Err(format!("\"{text}\" has no port: write IP:PORT, {example}")),
        Ok(IpAddr::V6(_)) => {
            return Err(format!(
                "\"{text}\" has no port: put an IPv6 address in brackets and add the port, like \"[::]:443\""
            ))
        }
        Err(_) => {}
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("\"{text}\" has no IP address: write \"0.0.0.0:{text}\" for all interfaces"));
    }
    match text.rsplit_once(':') {
        Some((host, _)) if host.parse::<Ipv6Addr>().is_ok() => {
            Err(format!("\"{text}\": put an IPv6 address in brackets, like \"[{host}]:443\""))
        }
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            if host.parse::<IpAddr>().is_err() && !host.starts_with('[') {
                Err(format!(
                    "\"{host}\" is not an IP address: listeners need an IP, not a hostname ({example}, or \"127.0.0.1:{port}\" for localhost only)"
                ))
            } else {
                Err(format!("\"{text}\" is not a valid IP:PORT address ({example})"))
            }
        }
        Some((_, port)) if port.parse::<u16>().is_err() => {
            Err(format!("\"{text}\" has an invalid port \"{port}\" (0-65535)"))
        }
        _ => Err(format!("\"{text}\" is not an IP:PORT address ({example})")),
    }
}

/// `http(s)://host[:port][/]` — a server is an address; paths belong to routes.
pub(crate) fn parse_server_url(text: &str) -> Result<ServerUrl, String> {
    let shape = "a server URL is scheme://host[:port], like \"http://10.0.0.11:8080\"";
    if text.chars().any(char::is_whitespace) {
        return Err(format!("\"{text}\" contains whitespace; {shape}"));
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(format!("\"{text}\" has no scheme: write \"http://{text}\" or \"https://{text}\""));
    };
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err(format!("unsupported scheme \"{scheme}\" in \"{text}\": use http:// or https://")),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if let Some(at) = tail.find(['?', '#']) {
        let what = if tail[at..].starts_with('?') { "a query" } else { "a fragment" };
        return Err(format!("\"{text}\" has {what} (\"{}\"); {shape}", &tail[at..]));
    }
    if !tail.is_empty() && tail != "/" {
        return Err(format!(
            "\"{text}\" has a path (\"{tail}\"); {shape} (request paths are forwarded as they are, or with a route's strip_prefix)"
        ));
    }
    if authority.contains('@') {
        // Do not echo the text back: it may hold a password.
        return Err(format!("server URL has user info (\"user@\"), which is not supported; {shape}"));
    }
    let (host, port) = split_host_port(authority).map_err(|e| format!("\"{text}\": {e}"))?;
    let port = match port {
        None => scheme.default_port(),
        Some(port) => match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("\"{text}\" has an invalid port \"{port}\" (1-65535)")),
        },
    };
    Ok(ServerUrl { original: text.to_string(), scheme, host, port })
}

/// Splits "host[:port]" / "[v6][:port]"; the host comes back lower-cased and
/// without brackets.
fn split_host_port(authority: &str) -> Result<(String, Option<&str>), String> {
    if authority.is_empty() {
        return Err("the host is missing".to_string());
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or("unclosed '[' in the IPv6 address")?;
        let ip: Ipv6Addr = v6.parse().map_err(|_| format!("\"{v6}\" is not an IPv6 address"))?;
        return match after {
            "" => Ok((ip.to_string(), None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((ip.to_string(), Some(port))),
                None => Err(format!("unexpected \"{after}\" after the IPv6 address")),
            },
        };
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) if port.contains(':') => {
            return Err(format!("put IPv6 addresses in brackets, like \"[{host}:{port}]\""))
        }
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    check_hostname(host)?;
    Ok((host.to_ascii_lowercase(), port))
}

/// Letters, digits, '-', '_' and non-empty dot-separated labels.
fn check_hostname(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host is missing".to_string());
    }
    if let Some(bad) = host.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        return Err(format!("\"{host}\" is not a valid host name (character '{bad}')"));
    }
    if host.split('.').any(str::is_empty) {
        return Err(format!("\"{host}\" is not a valid host name (empty label)"));
    }
    Ok(())
}

/// Route host: "example.com" or "*.example.com", lower-cased; no port, no
/// other wildcard. Route matching compares against the request's Host with
/// its port removed (docs/configuration.md, Routing), so a port here could never match.
pub(crate) fn parse_route_host(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("host is empty: leave `host` out to match any host".to_string());
    }
    if text.contains("://") || text.contains('/') {
        return Err(format!("\"{text}\" is not a host name: write just the name, like \"example.com\""));
    }
    if text == "*" {
        return Err("\"*\" is not needed: leave `host` out to match any host".to_string());
    }
    let (wildcard, name) = match text.strip_prefix("*.") {
        Some(name) => (true, name),
        None => (false, text),
    };
    if name.contains('*') {
        return Err(format!("\"{text}\": a wildcard is only allowed as the whole first label, like \"*.example.com\""));
    }
    if name.contains(':') {
        return Err(format!(
            "\"{text}\" has a port: routes match the host without its port, so write \"{}\"",
            text.split(':').next().unwrap_or_default()
        ));
    }
    check_hostname(name)?;
    let lower = name.to_ascii_lowercase();
    Ok(if wildcard { format!("*.{lower}") } else { lower })
}

/// Route and health-check paths: absolute, no query or fragment.
pub(crate) fn check_path(text: &str) -> Result<(), String> {
    if !text.starts_with('/') {
        return Err(format!("path \"{text}\" must start with '/'"));
    }
    if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("path \"{}\" contains {c:?}", text.escape_debug()));
    }
    if text.contains(['?', '#']) {
        return Err(format!("path \"{text}\" must not contain a query or fragment"));
    }
    Ok(())
}

/// "client_ip" | "header:NAME" | "cookie:NAME".
pub(crate) fn parse_hash_on(text: &str) -> Result<HashOn, String> {
    let choices = "client_ip, header:NAME or cookie:NAME";
    if text == "client_ip" {
        return Ok(HashOn::ClientIp);
    }
    if let Some(name) = text.strip_prefix("header:") {
        if name.is_empty() {
            return Err("missing header name after \"header:\"".to_string());
        }
        return http::HeaderName::from_bytes(name.as_bytes())
            .map(HashOn::Header)
            .map_err(|_| format!("\"{name}\" is not a valid header name"));
    }
    if let Some(name) = text.strip_prefix("cookie:") {
        if name.is_empty() {
            return Err("missing cookie name after \"cookie:\"".to_string());
        }
        return parse_cookie_name(name).map(HashOn::Cookie);
    }
    Err(format!("unknown hash_on \"{text}\": use {choices}"))
}

/// An RFC 6265 cookie-name: an RFC 7230 token.
pub(crate) fn parse_cookie_name(name: &str) -> Result<String, String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() {
        return Err("the cookie name is empty".to_string());
    }
    if !name.chars().all(token) {
        return Err(format!("\"{name}\" is not a valid cookie name"));
    }
    Ok(name.to_string())
}

/// "1.2" | "1.3". A plain YAML `1.2` arrives as the same text.
pub(crate) fn parse_tls_version(text: &str) -> Result<TlsVersion, String> {
    match text {
        "1.2" => Ok(TlsVersion::V1_2),
        "1.3" => Ok(TlsVersion::V1_3),
        _ => Err(format!("unsupported TLS version \"{text}\": use \"1.2\" or \"1.3\" (older versions are insecure)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen_addr("0.0.0.0:443").unwrap().port(), 443);
        assert!(parse_listen_addr("[::]:443").unwrap().is_ipv6());
        assert!(parse_listen_addr("localhost:8080").unwrap_err().contains("not a hostname"));
        assert!(parse_listen_addr("example.com:80").unwrap_err().contains("not a hostname"));
        assert!(parse_listen_addr("443").unwrap_err().contains("0.0.0.0:443"));
        assert!(parse_listen_addr("10.0.0.1").unwrap_err().contains("no port"));
        assert!(parse_listen_addr("::1:443").unwrap_err().contains("brackets"));
        assert!(parse_listen_addr("1.2.3.4:99999").unwrap_err().contains("invalid port"));
    }

    #[test]
    fn server_urls() {
        let url = parse_server_url("http://10.0.0.11:8080").unwrap();
        assert_eq!((url.scheme, url.host.as_str(), url.port), (Scheme::Http, "10.0.0.11", 8080));
        let url = parse_server_url("HTTPS://Backend.Example.COM/").unwrap();
        assert_eq!((url.scheme, url.host.as_str(), url.port), (Scheme::Https, "backend.example.com", 443));
        assert_eq!(url.original, "HTTPS://Backend.Example.COM/");
        let url = parse_server_url("http://[::1]:9000").unwrap();
        assert_eq!((url.host.as_str(), url.port, url.authority()), ("::1", 9000, "[::1]:9000".into()));
        assert_eq!(parse_server_url("http://[::1]").unwrap().port, 80);
        assert_eq!(url.to_string(), "http://[::1]:9000");
    }

    #[test]
    fn bad_server_urls() {
        let err = |s| parse_server_url(s).unwrap_err();
        assert!(err("10.0.0.1:80").contains("no scheme"));
        assert!(err("ftp://x").contains("unsupported scheme \"ftp\""));
        assert!(err("http://x/api").contains("has a path (\"/api\")"));
        assert!(err("http://x?a=1").contains("has a query"));
        assert!(err("http://x/#f").contains("has a fragment"));
        let e = err("http://bob:secret@x");
        assert!(e.contains("user info") && !e.contains("secret"), "{e}");
        assert!(err("http://").contains("host is missing"));
        assert!(err("http://:80").contains("host is missing"));
        assert!(err("http://x:0").contains("invalid port"));
        assert!(err("http://x:http").contains("invalid port"));
        assert!(err("http://x:").contains("invalid port"));
        assert!(err("http://::1:80").contains("brackets"));
        assert!(err("http://[zz]:80").contains("not an IPv6"));
        assert!(err("http://a b").contains("whitespace"));
        assert!(err("http://bad!host").contains("not a valid host"));
    }

    #[test]
    fn route_hosts_and_paths() {
        assert_eq!(parse_route_host("Example.COM").unwrap(), "example.com");
        assert_eq!(parse_route_host("*.Example.com").unwrap(), "*.example.com");
        assert!(parse_route_host("example.com:8080").unwrap_err().contains("port"));
        assert!(parse_route_host("a.*.com").unwrap_err().contains("wildcard"));
        assert!(parse_route_host("*example.com").unwrap_err().contains("wildcard"));
        assert!(parse_route_host("*").is_err());
        assert!(parse_route_host("https://example.com").unwrap_err().contains("not a host"));
        assert!(parse_route_host("a..b").is_err());
        assert!(check_path("/api/").is_ok());
        assert!(check_path("api").unwrap_err().contains("start with '/'"));
        assert!(check_path("/a?b").is_err());
        assert!(check_path("/a b").is_err());
    }

    #[test]
    fn hash_on_and_tls_versions() {
        assert_eq!(parse_hash_on("client_ip"), Ok(HashOn::ClientIp));
        let header = parse_hash_on("header:X-User").unwrap();
        assert_eq!(header, HashOn::Header(http::HeaderName::from_static("x-user")));
        assert_eq!(parse_hash_on("cookie:sid"), Ok(HashOn::Cookie("sid".into())));
        assert!(parse_hash_on("header:").is_err());
        assert!(parse_hash_on("header:bad name").is_err());
        assert!(parse_hash_on("cookie:a=b").is_err());
        assert!(parse_hash_on("ip").unwrap_err().contains("client_ip"));
        assert_eq!(parse_tls_version("1.3"), Ok(TlsVersion::V1_3));
        assert!(parse_tls_version("1.1").is_err());
    }
}
