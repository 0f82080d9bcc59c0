//! `rewrite: {regex, replace}`: the path (never the query) sent upstream,
//! rewritten after `strip_prefix`; `$1`, `${name}` name the regex's groups.

use std::borrow::Cow;

use crate::config::RewriteConfig;

#[derive(Debug)]
pub(crate) struct Rewrite {
    regex: regex::Regex,
    replace: Box<str>,
}

impl Rewrite {
    pub(crate) fn compile(config: &RewriteConfig) -> Rewrite {
        Rewrite {
            regex: regex::Regex::new(&config.regex).expect("compiled once at load"),
            replace: config.replace.as_str().into(),
        }
    }

    /// `path_and_query` with its path rewritten; borrowed (no allocation) when the regex does not match.
    pub(crate) fn apply<'a>(&self, path_and_query: &'a str) -> Cow<'a, str> {
        let (path, query) = match path_and_query.find('?') {
            Some(i) => path_and_query.split_at(i),
            None => (path_and_query, ""),
        };
        match self.regex.replace(path, &*self.replace) {
            Cow::Borrowed(_) => Cow::Borrowed(path_and_query),
            Cow::Owned(mut path) => {
                if !path.starts_with('/') {
                    path.insert(0, '/');
                }
                path.push_str(query);
                Cow::Owned(path)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_only_with_groups() {
        let r = Rewrite::compile(&RewriteConfig { regex: "^/v1/(.*)$".into(), replace: "/v2/$1".into() });
        assert_eq!(r.apply("/v1/users?x=/v1/"), "/v2/users?x=/v1/");
        assert!(matches!(r.apply("/v3/users"), Cow::Borrowed("/v3/users")));
        let r = Rewrite::compile(&RewriteConfig { regex: "^/old".into(), replace: "".into() });
        assert_eq!(r.apply("/old"), "/", "an empty result is the root");
    }
}
