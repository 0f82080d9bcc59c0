//! Route actions and route policy (SPEC §9): raw -> schema, each error at the
//! value it is about.
//!
//! A named `policies:` block and a route's own fields are the same raw shape
//! (`RawPolicy`) and go through the same [`policy`] function; a route's policy
//! is its named blocks in the order listed, then its own fields, merged by
//! [`PolicyConfig::merge`].

use std::collections::BTreeMap;
use std::path::Path;

use super::error::ConfigError;
use super::locate::join;
use super::raw::{RawHeaderRules, RawPolicy, RawRoute, SpannedMap, S};
use super::schema::{
    HeaderRulesConfig, Placeholder, PolicyConfig, RedirectConfig, RespondConfig, RewriteConfig, RouteAction, Template,
    TemplatePart, UpstreamConfig,
};
use super::validate::Checker;

/// Headers porter owns on every hop: they describe one connection or the framing,
/// so a rule may remove them but never set or add them.
const NOT_SETTABLE: [&str; 8] =
    ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "content-length"];

/// The `policies:` section: each block validated once, by name.
pub(crate) fn named_policies(
    check: &Checker,
    raw: Option<&S<SpannedMap<S<RawPolicy>>>>,
    base_dir: &Path,
) -> Result<BTreeMap<String, PolicyConfig>, ConfigError> {
    let mut named = BTreeMap::new();
    let Some(raw) = raw else { return Ok(named) };
    for (name, block) in &raw.value.0 {
        let field = join("policies", &name.value);
        named.insert(name.value.clone(), policy(check, &block.value, &field, base_dir)?);
    }
    Ok(named)
}

/// A route's merged policy: `policies: [..]` in order, then its own fields.
pub(crate) fn route_policy(
    check: &Checker,
    route: &mut RawRoute,
    prefix: &str,
    named: &BTreeMap<String, PolicyConfig>,
    base_dir: &Path,
) -> Result<PolicyConfig, ConfigError> {
    let mut merged = PolicyConfig::default();
    if let Some(list) = &route.policies {
        for (i, name) in list.value.iter().enumerate() {
            let Some(block) = named.get(&name.value) else {
                let known = if named.is_empty() {
                    "no policies are defined".to_string()
                } else {
                    format!("known: {}", named.keys().map(String::as_str).collect::<Vec<_>>().join(", "))
                };
                let msg = format!("no policy named {:?} ({known})", name.value);
                return Err(check.err(name.referenced, &format!("{prefix}.policies[{i}]"), msg));
            };
            merged.merge(block.clone());
        }
    }
    let own = route.take_policy();
    merged.merge(policy(check, &own, prefix, base_dir)?);
    Ok(merged)
}

/// One block of policy fields; `prefix` is where they sit ("routes[2]", "policies.admin");
/// `base_dir` resolves file paths (`basic_auth.users_file`).
pub(crate) fn policy(
    check: &Checker,
    raw: &RawPolicy,
    prefix: &str,
    base_dir: &Path,
) -> Result<PolicyConfig, ConfigError> {
    let cidrs = |list: &Option<S<Vec<S<String>>>>, name: &str| -> Result<Vec<super::Cidr>, ConfigError> {
        let Some(list) = list else { return Ok(Vec::new()) };
        let field = join(prefix, name);
        if list.value.is_empty() {
            return Err(check.err(
                list.referenced,
                &field,
                "an empty list: give CIDR ranges like 10.0.0.0/8, or leave the field out",
            ));
        }
        list.value
            .iter()
            .enumerate()
            .map(|(i, entry)| check.value(entry, &format!("{field}[{i}]"), super::Cidr::parse))
            .collect()
    };
    Ok(PolicyConfig {
        allow: cidrs(&raw.allow, "allow")?,
        deny: cidrs(&raw.deny, "deny")?,
        request_headers: header_rules(check, raw.request_headers.as_ref(), &join(prefix, "request_headers"))?,
        rewrite: match &raw.rewrite {
            Some(rewrite) => {
                let field = join(prefix, "rewrite");
                let regex = &rewrite.value.regex;
                if let Err(e) = regex::Regex::new(&regex.value) {
                    // The regex crate's message spans lines (the pattern, a caret, the reason).
                    let reason = e.to_string().lines().last().unwrap_or("").trim().to_string();
                    let msg = format!("{:?} is not a valid regular expression: {reason}", regex.value);
                    return Err(check.err(regex.referenced, &join(&field, "regex"), msg));
                }
                Some(RewriteConfig { regex: regex.value.clone(), replace: rewrite.value.replace.value.clone() })
            }
            None => None,
        },
        response_headers: header_rules(check, raw.response_headers.as_ref(), &join(prefix, "response_headers"))?,
        rate_limit: match &raw.rate_limit {
            Some(raw) => Some(super::rate_limit::rate_limit(check, raw, &join(prefix, "rate_limit"))?),
            None => None,
        },
        basic_auth: match &raw.basic_auth {
            Some(b) => Some(super::auth::basic_auth(check, &join(prefix, "basic_auth"), b, base_dir)?),
            None => None,
        },
        forward_auth: match &raw.forward_auth {
            Some(f) => Some(super::auth::forward_auth(check, &join(prefix, "forward_auth"), f)?),
            None => None,
        },
    })
}

fn header_rules(
    check: &Checker,
    raw: Option<&S<RawHeaderRules>>,
    field: &str,
) -> Result<HeaderRulesConfig, ConfigError> {
    let Some(raw) = raw else { return Ok(HeaderRulesConfig::default()) };
    let rules = &raw.value;
    let pairs = |map: &Option<SpannedMap<S<String>>>, kind: &str| -> Result<Vec<(String, Template)>, ConfigError> {
        let Some(map) = map else { return Ok(Vec::new()) };
        let field = join(field, kind);
        map.0
            .iter()
            .map(|(name, value)| {
                let name = check.value(name, &field, settable_name)?;
                let template = check.value(value, &join(&field, &name), parse_template)?;
                Ok((name, template))
            })
            .collect()
    };
    let remove = match &rules.remove {
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, name)| check.value(name, &format!("{}[{i}]", join(field, "remove")), header_name))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    Ok(HeaderRulesConfig { set: pairs(&rules.set, "set")?, add: pairs(&rules.add, "add")?, remove })
}

/// A header name, lower-cased.
fn header_name(text: &str) -> Result<String, String> {
    match http::HeaderName::from_bytes(text.as_bytes()) {
        Ok(name) => Ok(name.as_str().to_string()),
        Err(_) => Err(format!("{:?} is not a valid header name", text)),
    }
}

/// A header name a rule may set or add.
fn settable_name(text: &str) -> Result<String, String> {
    let name = header_name(text)?;
    if NOT_SETTABLE.contains(&name.as_str()) {
        return Err(format!(
            "{text} cannot be set: porter manages it for each connection (hop-by-hop headers and framing); `remove` is allowed"
        ));
    }
    Ok(name)
}

/// `text` split into literal runs and `{placeholder}`s; each literal must be header-safe.
pub(crate) fn parse_template(text: &str) -> Result<Template, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return Err(format!("{text:?}: `{{` without a closing `}}`"));
        };
        let name = &rest[open + 1..open + close];
        let Some((_, var)) = Placeholder::ALL.iter().find(|(n, _)| *n == name) else {
            let known: Vec<String> = Placeholder::ALL.iter().map(|(n, _)| format!("{{{n}}}")).collect();
            return Err(format!("unknown placeholder {{{name}}} (known: {})", known.join(", ")));
        };
        if open > 0 {
            parts.push(TemplatePart::Literal(rest[..open].to_string()));
        }
        parts.push(TemplatePart::Var(*var));
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Literal(rest.to_string()));
    }
    for part in &parts {
        if let TemplatePart::Literal(literal) = part {
            if http::HeaderValue::from_str(literal).is_err() {
                return Err(format!("{:?} holds characters a header value cannot", text));
            }
        }
    }
    Ok(Template { parts })
}

/// The route's action: exactly one of `upstream`, `redirect`, `respond`.
pub(crate) fn action(
    check: &Checker,
    route: &S<RawRoute>,
    prefix: &str,
    upstreams: &BTreeMap<String, UpstreamConfig>,
) -> Result<RouteAction, ConfigError> {
    let r = &route.value;
    let mut given = Vec::new();
    if let Some(u) = &r.upstream {
        given.push(("upstream", u.referenced));
    }
    if let Some(x) = &r.redirect {
        given.push(("redirect", x.referenced));
    }
    if let Some(x) = &r.respond {
        given.push(("respond", x.referenced));
    }
    match given.as_slice() {
        [] => {
            let msg = "a route needs an action: one of `upstream`, `redirect` or `respond`";
            return Err(check.err(route.referenced, prefix, msg));
        }
        [_] => {}
        [(first, _), (second, loc), ..] => {
            let msg = format!(
                "`{second}` and `{first}` both given: a route has exactly one of `upstream`, `redirect` or `respond`"
            );
            return Err(check.err(*loc, &join(prefix, second), msg));
        }
    }
    if let Some(upstream) = &r.upstream {
        if !upstreams.contains_key(&upstream.value) {
            let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
            let known = if known.is_empty() {
                "no upstreams are defined".to_string()
            } else {
                format!("known: {}", known.join(", "))
            };
            let msg = format!("no upstream named {:?} ({known})", upstream.value);
            return Err(check.err(upstream.referenced, &join(prefix, "upstream"), msg));
        }
        return Ok(RouteAction::Upstream(upstream.value.clone()));
    }
    if let Some(redirect) = &r.redirect {
        let field = join(prefix, "redirect");
        let to = check.value(&redirect.value.to, &join(&field, "to"), parse_template)?;
        let status = match &redirect.value.status {
            Some(s) if matches!(s.value, 301 | 302 | 307 | 308) => s.value as u16,
            Some(s) => {
                let msg = format!("{} is not a redirect status: use 301, 302, 307 or 308", s.value);
                return Err(check.err(s.referenced, &join(&field, "status"), msg));
            }
            None => 308,
        };
        return Ok(RouteAction::Redirect(RedirectConfig { to, status }));
    }
    let respond = r.respond.as_ref().expect("one action is given");
    let field = join(prefix, "respond");
    let status = match &respond.value.status {
        Some(s) if (200..=599).contains(&s.value) => s.value as u16,
        Some(s) => {
            let msg = format!("{} is not a status porter can answer with: use 200 to 599", s.value);
            return Err(check.err(s.referenced, &join(&field, "status"), msg));
        }
        None => 200,
    };
    let mut headers = Vec::new();
    if let Some(map) = &respond.value.headers {
        let field = join(&field, "headers");
        for (name, value) in &map.0 {
            let name = check.value(name, &field, settable_name)?;
            check.value(value, &join(&field, &name), |v| {
                http::HeaderValue::from_str(v).map(|_| ()).map_err(|_| format!("{v:?} is not a valid header value"))
            })?;
            headers.push((name, value.value.clone()));
        }
    }
    Ok(RouteAction::Respond(RespondConfig { status, body: respond.value.body.clone().unwrap_or_default(), headers }))
}
