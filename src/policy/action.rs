//! The local actions of a route: `redirect` and `respond` answer without an
//! upstream. Everything is prepared at load; an answer clones a header map
//! and, for a redirect with placeholders, renders one `Location`.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use super::template::Template;
use super::{Answer, Rule, Vars};
use crate::config::{RedirectConfig, RespondConfig};
use crate::upstream::ResponseBody;

#[derive(Debug)]
pub(crate) struct Redirect {
    to: Template,
    status: StatusCode,
}

impl Redirect {
    pub(crate) fn compile(config: &RedirectConfig) -> Redirect {
        Redirect {
            to: Template::compile(&config.to),
            status: StatusCode::from_u16(config.status).expect("validated at load"),
        }
    }

    pub(crate) fn answer(&self, vars: &Vars) -> Answer {
        let mut response = Response::new(ResponseBody::empty());
        *response.status_mut() = self.status;
        response.headers_mut().insert(header::LOCATION, self.to.render(vars));
        Answer { rule: Rule::Redirect, response }
    }
}

#[derive(Debug)]
pub(crate) struct Respond {
    status: StatusCode,
    body: Bytes,
    headers: HeaderMap,
}

impl Respond {
    pub(crate) fn compile(config: &RespondConfig) -> Respond {
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("validated at load");
            headers.append(name, HeaderValue::from_str(value).expect("validated at load"));
        }
        if !config.body.is_empty() && !headers.contains_key(header::CONTENT_TYPE) {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        }
        Respond {
            status: StatusCode::from_u16(config.status).expect("validated at load"),
            body: Bytes::copy_from_slice(config.body.as_bytes()),
            headers,
        }
    }

    pub(crate) fn answer(&self) -> Answer {
        let body = if self.body.is_empty() { ResponseBody::empty() } else { ResponseBody::full(self.body.clone()) };
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        Answer { rule: Rule::Respond, response }
    }
}
