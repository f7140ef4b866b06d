//! `[headers]` in a vhost or route: request and response header rules.

use crate::config::diag::{Diagnostic, Diagnostics};
use crate::config::read::{self, TableReader};
use crate::config::source::{Loc, Node, Value};

/// Header names that frame or route a message: rules must not touch them.
const PROTECTED_HEADERS: [&str; 7] = [
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "keep-alive",
    "te",
    "trailer",
];

fn header_name(node: &Node, name: &str, diags: &mut Diagnostics) -> Option<http::HeaderName> {
    let s = read::string(node, name, diags)?;
    header_name_str(&s, &node.loc, name, diags)
}

fn header_name_str(s: &str, loc: &Loc, name: &str, diags: &mut Diagnostics) -> Option<http::HeaderName> {
    match http::HeaderName::from_bytes(s.as_bytes()) {
        Ok(h) if PROTECTED_HEADERS.contains(&h.as_str()) => {
            diags.push(
                Diagnostic::at(loc, format!("{name}: `{s}` cannot be changed by a header rule"))
                    .hint("connection-level headers are managed by the proxy itself"),
            );
            None
        }
        Ok(h) => Some(h),
        Err(_) => {
            diags.push(
                Diagnostic::at(loc, format!("{name}: `{s}` is not a valid header name"))
                    .hint("header names are letters, digits and -_.!#$%&'*+^`|~ without spaces or colons"),
            );
            None
        }
    }
}

fn header_value(node: &Node, name: &str, diags: &mut Diagnostics) -> Option<http::HeaderValue> {
    let s = read::string(node, name, diags)?;
    match http::HeaderValue::from_str(&s) {
        Ok(v) => Some(v),
        Err(_) => {
            diags.push(
                Diagnostic::at(
                    &node.loc,
                    format!("{name}: the value is not a valid header value"),
                )
                .hint("header values cannot contain newlines or other control characters"),
            );
            None
        }
    }
}

/// `[headers.request]` / `[headers.response]` with `remove`, `set`, `add`, `replace`.
pub fn read_header_rules(
    node: &Node,
    what: &str,
    diags: &mut Diagnostics,
) -> crate::policy::headers::HeaderRules {
    let mut rules = crate::policy::headers::HeaderRules::default();
    let Some(mut t) = TableReader::new(node, format!("[headers] of {what}"), diags) else {
        return rules;
    };
    if let Some(n) = t.get("request") {
        rules.request = read_rules(n, &format!("[headers.request] of {what}"), diags);
    }
    if let Some(n) = t.get("response") {
        rules.response = read_rules(n, &format!("[headers.response] of {what}"), diags);
    }
    t.finish(diags);
    rules
}

fn read_rules(node: &Node, what: &str, diags: &mut Diagnostics) -> crate::policy::headers::Rules {
    use crate::policy::headers::Op;
    let mut ops = Vec::new();
    let Some(mut t) = TableReader::new(node, what.to_string(), diags) else {
        return crate::policy::headers::Rules { ops };
    };
    if let Some(names) = t.opt("remove", diags, read::list(header_name)) {
        ops.extend(names.into_iter().map(Op::Remove));
    }
    for (key, add) in [("set", false), ("add", true)] {
        let Some(n) = t.get(key) else { continue };
        let Some(mut pairs) = TableReader::new(n, format!("`{key}` in {what}"), diags) else {
            continue;
        };
        for e in pairs.take_all() {
            let label = format!("`{key}.{}` in {what}", e.key);
            let (Some(h), Some(v)) = (
                header_name_str(&e.key, &e.key_loc, &label, diags),
                header_value(&e.node, &label, diags),
            ) else {
                continue;
            };
            ops.push(if add { Op::Add(h, v) } else { Op::Set(h, v) });
        }
        pairs.finish(diags);
    }
    if let Some(n) = t.get("replace") {
        let items: &[Node] = match &n.value {
            Value::Array(items) => items,
            _ => std::slice::from_ref(n),
        };
        for item in items {
            let Some(mut r) = TableReader::new(item, format!("a `replace` rule in {what}"), diags) else {
                continue;
            };
            let name = r.opt("name", diags, header_name);
            let re = r.opt("regex", diags, |n, label, d| {
                let s = read::string(n, label, d)?;
                regex::bytes::Regex::new(&s)
                    .map_err(|e| {
                        d.error(
                            &n.loc,
                            format!(
                                "{label}: invalid regular expression: {}",
                                e.to_string().lines().last().unwrap_or("").trim()
                            ),
                        )
                    })
                    .ok()
            });
            let with = r.opt("with", diags, read::string);
            r.finish(diags);
            match (name, re, with) {
                (Some(n), Some(re), Some(w)) => ops.push(Op::Replace(n, re, w)),
                (None, _, _) | (_, _, None) if diags.is_empty() => diags.push(
                    Diagnostic::at(
                        &item.loc,
                        format!("a `replace` rule in {what} needs `name`, `regex` and `with`"),
                    )
                    .hint("write { name = \"Location\", regex = \"^http://\", with = \"https://\" }"),
                ),
                _ => {}
            }
        }
    }
    t.finish(diags);
    // Apply order is remove, set, add, replace whatever order they were written in.
    ops.sort_by_key(|op| match op {
        Op::Remove(_) => 0,
        Op::Set(..) => 1,
        Op::Add(..) => 2,
        Op::Replace(..) => 3,
    });
    crate::policy::headers::Rules { ops }
}
