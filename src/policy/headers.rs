//! `request_headers` / `response_headers`: `remove`, then `set` (replace),
//! then `add` (append). Names are parsed once at load; hop-by-hop and framing
//! headers cannot be set (refused at load). Values may hold placeholders.

use http::header::{self, HeaderMap, HeaderName};
use http::Response;

use super::template::Template;
use super::Vars;
use crate::config::HeaderRulesConfig;
use crate::upstream::ResponseBody;

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

#[derive(Debug)]
pub(crate) struct HeaderRules {
    remove: Box<[HeaderName]>,
    set: Box<[(HeaderName, Template)]>,
    add: Box<[(HeaderName, Template)]>,
}

impl HeaderRules {
    pub(crate) fn compile(config: &HeaderRulesConfig) -> Option<HeaderRules> {
        if config.is_empty() {
            return None;
        }
        let name = |n: &String| HeaderName::from_bytes(n.as_bytes()).expect("validated at load");
        let pairs = |list: &[(String, crate::config::Template)]| {
            list.iter().map(|(n, t)| (name(n), Template::compile(t))).collect()
        };
        Some(HeaderRules {
            remove: config.remove.iter().map(name).collect(),
            set: pairs(&config.set),
            add: pairs(&config.add),
        })
    }

    pub(crate) fn apply(&self, headers: &mut HeaderMap, vars: &Vars) {
        for name in &*self.remove {
            headers.remove(name);
        }
        for (name, value) in &*self.set {
            headers.insert(name.clone(), value.render(vars));
        }
        for (name, value) in &*self.add {
            headers.append(name.clone(), value.render(vars));
        }
    }
}

/// A server's fields that porter's HTTP/1.1 client kept as bytes (written to an
/// HTTP/1.1 client as they came) moved into the response's map, so a rule can
/// change them. porter's own fields there replace a server's of the same name,
/// as the writer would have done.
pub(crate) fn own_fields(response: &mut Response<ResponseBody>) {
    let Some(raw) = response.body_mut().take_raw_fields() else { return };
    let mut headers = raw.to_header_map();
    // The writer drops these from raw fields; from a map it would write them. `Connection`
    // stays: the writer reads its `close` and never writes it.
    for name in
        [&KEEP_ALIVE, &PROXY_CONNECTION, &header::TE, &header::TRAILER, &header::TRANSFER_ENCODING, &header::UPGRADE]
    {
        headers.remove(name);
    }
    let own = std::mem::take(response.headers_mut());
    let mut last = None;
    for (name, value) in own {
        // `HeaderMap`'s owning iterator names a header once, before all its values.
        if let Some(name) = name {
            headers.remove(&name);
            last = Some(name);
        }
        if let Some(name) = &last {
            headers.append(name.clone(), value);
        }
    }
    *response.headers_mut() = headers;
}
