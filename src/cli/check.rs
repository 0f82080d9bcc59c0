//! `porter check`: the configuration validated as start would, and a summary of it.

use std::path::Path;
use std::process::ExitCode;

use porter::Config;

pub(crate) fn check(path: &Path, config: &Config) -> ExitCode {
    // The report is written whole at the end: `porter check | head -1` closes the pipe
    // early, and a closed stdout must end the command quietly, not in a panic.
    let mut out = String::new();
    let code = check_report(path, config, &mut out);
    use std::io::Write;
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Ok(()) => code,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => code,
        Err(e) => {
            eprintln!("porter: cannot write the report: {e}");
            ExitCode::from(1)
        }
    }
}

fn check_report(path: &Path, config: &Config, out: &mut String) -> ExitCode {
    use std::fmt::Write;
    // Exactly what start and reload run after loading the file.
    let warnings = match porter::validate(config) {
        Ok(warnings) => warnings,
        Err(e) => {
            eprintln!("porter: invalid configuration: {e}");
            return ExitCode::from(1);
        }
    };
    let _ = writeln!(out, "configuration {} is valid", path.display());
    for warning in &warnings {
        let _ = writeln!(out, "  WARNING: {warning}");
    }
    let listen = &config.listen;
    for (what, address) in [("https", listen.https), ("http", listen.http), ("admin", listen.admin)] {
        if let Some(address) = address {
            let _ = writeln!(out, "  listen {what:5} {address}");
        }
    }
    if listen.http.is_some() {
        let _ = writeln!(out, "  http: {}", if config.http.redirect { "redirects to https" } else { "serves routes" });
    }
    let log = &config.access_log;
    let _ = match (&log.path, log.enabled) {
        (_, false) => writeln!(out, "  access log: off"),
        (Some(file), true) => writeln!(out, "  access log: {} to {}", log.format, file.display()),
        (None, true) => writeln!(out, "  access log: {} to stderr", log.format),
    };
    let _ = writeln!(out, "routes:");
    for route in &config.routes {
        let strip = if route.strip_prefix { " (prefix stripped)" } else { "" };
        let action = match &route.action {
            porter::RouteAction::Upstream(name) => name.clone(),
            porter::RouteAction::Redirect(r) => format!("redirect {}", r.status),
            porter::RouteAction::Respond(r) => format!("respond {}", r.status),
        };
        let strip = if route.policy.is_empty() { strip.to_string() } else { format!("{strip} (with policy)") };
        let _ = writeln!(out, "  {}{} -> {}{strip}", route.host.as_deref().unwrap_or("*"), route.path, action);
    }
    let _ = writeln!(out, "upstreams:");
    for (name, upstream) in &config.upstreams {
        let sticky = upstream.sticky.as_ref().map(|s| format!(", sticky cookie {}", s.cookie)).unwrap_or_default();
        let _ = writeln!(out, "  {name} ({}, retries {}{sticky})", upstream.balance, upstream.retries);
        for server in &upstream.servers {
            let _ = writeln!(out, "    {} weight {}", server.url.original, server.weight);
        }
    }
    if let Some(acme) = &config.acme {
        for line in porter::describe_acme(acme, &config.tls.certs) {
            let _ = writeln!(out, "{line}");
        }
    }
    if config.listen.https.is_none() {
        // Nothing serves TLS: the folder is not read, so there is nothing to warn about.
        let _ = writeln!(out, "certificates: none needed (no https listener)");
        return ExitCode::SUCCESS;
    }
    let _ = writeln!(out, "certificates in {}:", config.tls.certs.display());
    if !config.tls.certs.is_dir() {
        // Not fatal: porter starts with a self-signed certificate, as it would with an empty folder.
        let _ = writeln!(
            out,
            "  WARNING: the folder does not exist; porter would start with a self-signed certificate for localhost"
        );
        return ExitCode::SUCCESS;
    }
    let (store, problems) = porter::CertStore::scan(&config.tls.certs, None);
    if store.is_empty() {
        let _ = writeln!(out, "  none: porter would start with a self-signed certificate for localhost");
    }
    for cert in store.certs() {
        let _ = writeln!(out, "  {}", porter::describe_certificate(cert));
    }
    for problem in &problems {
        let _ = writeln!(out, "  ERROR {problem}");
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
