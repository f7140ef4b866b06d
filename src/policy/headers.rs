//! Generic header rules per vhost and route: set, add, remove request and response headers, and
//! regex replacement inside a header value.
//!
//! Names, values and regexes are validated and compiled once at config load; applying a rule set
//! only touches the headers it names. Applied after vestibule's own policies (forwarded headers,
//! HSTS, embedding), so an admin has the last word.

pub(crate) mod config;

use http::header::{HeaderName, HeaderValue};
use pingora_http::{RequestHeader, ResponseHeader};

/// One operation, in the order they are applied: remove, set, add, replace.
#[derive(Debug, Clone)]
pub enum Op {
    Remove(HeaderName),
    Set(HeaderName, HeaderValue),
    Add(HeaderName, HeaderValue),
    /// Replace every match of the regex in each value of the header (`$1` etc. refer to groups).
    Replace(HeaderName, regex::bytes::Regex, String),
}

/// Rules for one direction.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub ops: Vec<Op>,
}

/// Request and response rules of a vhost or route.
#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    pub request: Rules,
    pub response: Rules,
}

/// The two pingora header types, which share these methods but no trait.
pub trait Headers {
    fn map(&self) -> &http::HeaderMap;
    fn remove(&mut self, name: &HeaderName);
    fn insert(&mut self, name: HeaderName, value: HeaderValue);
    fn append(&mut self, name: HeaderName, value: HeaderValue);
}

macro_rules! impl_headers {
    ($t:ty) => {
        impl Headers for $t {
            fn map(&self) -> &http::HeaderMap {
                &self.headers
            }
            fn remove(&mut self, name: &HeaderName) {
                self.remove_header(name);
            }
            fn insert(&mut self, name: HeaderName, value: HeaderValue) {
                // Cannot fail: name and value are already validated types.
                let _ = self.insert_header(name, value);
            }
            fn append(&mut self, name: HeaderName, value: HeaderValue) {
                let _ = self.append_header(name, value);
            }
        }
    };
}
impl_headers!(RequestHeader);
impl_headers!(ResponseHeader);

impl Rules {
    pub fn apply(&self, h: &mut impl Headers) {
        for op in &self.ops {
            match op {
                Op::Remove(n) => h.remove(n),
                Op::Set(n, v) => h.insert(n.clone(), v.clone()),
                Op::Add(n, v) => h.append(n.clone(), v.clone()),
                Op::Replace(n, re, with) => {
                    let values: Vec<HeaderValue> = h.map().get_all(n).iter().cloned().collect();
                    if values.is_empty() || !values.iter().any(|v| re.is_match(v.as_bytes())) {
                        continue;
                    }
                    h.remove(n);
                    for v in values {
                        let replaced = re.replace_all(v.as_bytes(), with.as_bytes());
                        // A replacement that would make an invalid value keeps the original.
                        let nv = HeaderValue::from_bytes(&replaced).unwrap_or(v);
                        h.append(n.clone(), nv);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_in_order() {
        let rules = Rules {
            ops: vec![
                Op::Remove(HeaderName::from_static("x-debug")),
                Op::Set(HeaderName::from_static("x-a"), HeaderValue::from_static("1")),
                Op::Add(HeaderName::from_static("x-b"), HeaderValue::from_static("2")),
                Op::Replace(
                    HeaderName::from_static("location"),
                    regex::bytes::Regex::new("^http://(.*)$").unwrap(),
                    "https://$1".into(),
                ),
            ],
        };
        let mut r = ResponseHeader::build(302, None).unwrap();
        r.append_header("x-debug", "yes").unwrap();
        r.append_header("x-a", "0").unwrap();
        r.append_header("x-b", "1").unwrap();
        r.append_header("location", "http://chat.example.org/x").unwrap();
        rules.apply(&mut r);
        assert!(r.headers.get("x-debug").is_none());
        assert_eq!(r.headers.get_all("x-a").iter().collect::<Vec<_>>(), ["1"]);
        assert_eq!(r.headers.get_all("x-b").iter().collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(r.headers["location"], "https://chat.example.org/x");
    }
}
