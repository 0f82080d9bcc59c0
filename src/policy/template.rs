//! Values with placeholders (`https://example.com{uri}`, `{client_ip}`),
//! split at load time. A value without placeholders is one prepared header
//! value, handed out by a reference-count increment; one with placeholders is
//! rendered into one buffer, the only allocation it costs.

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderValue;

use super::Vars;
use crate::config::{Placeholder, Template as TemplateConfig, TemplatePart};

#[derive(Debug)]
pub(crate) struct Template {
    /// The whole value, when it holds no placeholder.
    fixed: Option<HeaderValue>,
    parts: Box<[Part]>,
}

#[derive(Debug)]
enum Part {
    Literal(Bytes),
    Var(Placeholder),
}

impl Template {
    pub(crate) fn compile(config: &TemplateConfig) -> Template {
        let fixed =
            config.as_literal().map(|text| HeaderValue::from_str(text).expect("validated as a header value at load"));
        let parts = config
            .parts
            .iter()
            .map(|part| match part {
                TemplatePart::Literal(text) => Part::Literal(Bytes::copy_from_slice(text.as_bytes())),
                TemplatePart::Var(var) => Part::Var(*var),
            })
            .collect();
        Template { fixed, parts }
    }

    pub(crate) fn render(&self, vars: &Vars) -> HeaderValue {
        if let Some(fixed) = &self.fixed {
            return fixed.clone();
        }
        let mut out = BytesMut::with_capacity(128);
        for part in &*self.parts {
            match part {
                Part::Literal(bytes) => out.put_slice(bytes),
                Part::Var(var) => out.put_slice(value(*var, vars)),
            }
        }
        // Every part is a valid header value (checked at load, or from a parsed request).
        HeaderValue::from_maybe_shared(out.freeze()).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

fn value(var: Placeholder, vars: &Vars) -> &[u8] {
    match var {
        Placeholder::ClientIp => vars.client_ip_value.as_bytes(),
        Placeholder::Host => vars.host.as_bytes(),
        Placeholder::Path => vars.uri.path().as_bytes(),
        Placeholder::Query => vars.uri.query().unwrap_or("").as_bytes(),
        Placeholder::Uri => vars.uri.path_and_query().map_or("/", |pq| pq.as_str()).as_bytes(),
        Placeholder::Scheme => {
            if vars.https {
                b"https"
            } else {
                b"http"
            }
        }
        Placeholder::RequestId => vars.request_id.as_bytes(),
    }
}
