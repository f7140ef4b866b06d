//! Typed reading of the span-carrying tree, collecting every error.
//!
//! A [`TableReader`] hands out the keys a section asks for and, at [`TableReader::finish`], reports
//! every key nobody asked for as unknown, with a "did you mean" drawn from the keys that were asked
//! for. So the list of valid keys is the code that reads them: the two cannot drift apart.

use std::net::SocketAddr;
use std::time::Duration;

use super::diag::{did_you_mean, Diagnostic, Diagnostics, MAX_SHOWN};
use super::source::{Entry, Loc, Node, Value};

pub struct TableReader<'a> {
    what: String,
    loc: Loc,
    entries: &'a [Entry],
    used: Vec<bool>,
    asked: Vec<&'static str>,
}

impl<'a> TableReader<'a> {
    /// Start reading `node` as a table; `what` names it in messages (`[proxy]`, `vhost`, ...).
    pub fn new(node: &'a Node, what: impl Into<String>, diags: &mut Diagnostics) -> Option<Self> {
        let what = what.into();
        match &node.value {
            Value::Table(entries) => Some(TableReader {
                what,
                loc: node.loc.clone(),
                entries,
                used: vec![false; entries.len()],
                asked: Vec::new(),
            }),
            other => {
                diags.error(
                    &node.loc,
                    format!("{what} must be a table, found {}", other.type_name()),
                );
                None
            }
        }
    }

    pub fn loc(&self) -> &Loc {
        &self.loc
    }

    /// The value of `key`, if present; marks it as known.
    pub fn get(&mut self, key: &'static str) -> Option<&'a Node> {
        self.asked.push(key);
        let i = self.entries.iter().position(|e| e.key == key)?;
        self.used[i] = true;
        Some(&self.entries[i].node)
    }

    /// Every entry, all marked as known: for tables whose keys are names (`[upstream.NAME]`).
    pub fn take_all(&mut self) -> &'a [Entry] {
        self.used.iter_mut().for_each(|u| *u = true);
        self.entries
    }

    /// Like [`get`](Self::get) but converts the value with `f`.
    pub fn opt<T>(
        &mut self,
        key: &'static str,
        diags: &mut Diagnostics,
        f: impl FnOnce(&Node, &str, &mut Diagnostics) -> Option<T>,
    ) -> Option<T> {
        let node = self.get(key)?;
        let name = format!("`{key}` in {}", self.what);
        f(node, &name, diags)
    }

    /// Report keys that no reader asked for.
    pub fn finish(self, diags: &mut Diagnostics) {
        for (entry, used) in self.entries.iter().zip(&self.used) {
            if *used {
                continue;
            }
            let mut d = Diagnostic::at(
                &entry.key_loc,
                format!("unknown key `{}` in {}", entry.key, self.what),
            );
            // Past the errors that are shown, only the count matters: a file of 400,000 unknown
            // keys must not cost 400,000 suggestions.
            if diags.len() >= MAX_SHOWN {
                diags.push(d);
                continue;
            }
            d = match did_you_mean(&entry.key, self.asked.iter().copied()) {
                Some(k) => d.hint(format!("did you mean `{k}`?")),
                None => d.hint(format!("known keys here: {}", self.asked.join(", "))),
            };
            diags.push(d);
        }
    }
}

fn expected(node: &Node, name: &str, what: &str, diags: &mut Diagnostics) {
    diags.error(
        &node.loc,
        format!("{name} must be {what}, found {}", node.value.type_name()),
    );
}

pub fn string(node: &Node, name: &str, diags: &mut Diagnostics) -> Option<String> {
    match &node.value {
        Value::Str(s) => Some(s.clone()),
        _ => {
            expected(node, name, "a string", diags);
            None
        }
    }
}

pub fn boolean(node: &Node, name: &str, diags: &mut Diagnostics) -> Option<bool> {
    match node.value {
        Value::Bool(b) => Some(b),
        _ => {
            expected(node, name, "true or false", diags);
            None
        }
    }
}

pub fn integer(node: &Node, name: &str, diags: &mut Diagnostics) -> Option<i64> {
    match node.value {
        Value::Int(i) => Some(i),
        _ => {
            expected(node, name, "an integer", diags);
            None
        }
    }
}

/// An integer in `min..=max`.
pub fn int_in(min: i64, max: i64) -> impl Fn(&Node, &str, &mut Diagnostics) -> Option<i64> {
    move |node, name, diags| {
        let i = integer(node, name, diags)?;
        if (min..=max).contains(&i) {
            Some(i)
        } else {
            diags.error(
                &node.loc,
                format!("{name} must be between {min} and {max}, found {i}"),
            );
            None
        }
    }
}

/// A string or an array of strings, each converted with `f`; one bad element does not hide the others.
pub fn list<T>(
    f: impl Fn(&Node, &str, &mut Diagnostics) -> Option<T>,
) -> impl Fn(&Node, &str, &mut Diagnostics) -> Option<Vec<T>> {
    move |node, name, diags| match &node.value {
        Value::Array(items) => {
            let before = diags.len();
            let out: Vec<T> = items.iter().filter_map(|n| f(n, name, diags)).collect();
            (diags.len() == before).then_some(out)
        }
        Value::Str(_) => f(node, name, diags).map(|v| vec![v]),
        _ => {
            expected(node, name, "a string or an array of strings", diags);
            None
        }
    }
}

/// Durations: `"250ms"`, `"90s"`, `"10m"`, `"1h"`, `"2d"`, or a bare integer of seconds.
pub fn duration(node: &Node, name: &str, diags: &mut Diagnostics) -> Option<Duration> {
    let parsed = match &node.value {
        Value::Int(i) if *i >= 0 => Ok(Duration::from_secs(*i as u64)),
        Value::Str(s) => parse_duration(s),
        _ => Err(String::new()),
    };
    match parsed {
        Ok(d) => Some(d),
        Err(why) => {
            let mut d = Diagnostic::at(&node.loc, format!("{name} is not a valid duration{why}"));
            d = d.hint("write a number with a unit: \"500ms\", \"90s\", \"10m\", \"1h\", \"1d\"");
            diags.push(d);
            None
        }
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!(" (`{s}`)"))?;
    let secs = |m: u64| Ok(Duration::from_secs(n.saturating_mul(m)));
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => secs(1),
        "m" | "min" => secs(60),
        "h" => secs(3600),
        "d" => secs(86400),
        other => Err(format!(" (unknown unit `{other}`)")),
    }
}

/// Byte sizes: `"100MiB"`, `"10MB"`, `"512k"`, `"1G"`, or a bare integer of bytes. Binary units
/// throughout (`MB` = `MiB`), as nginx reads `100m`.
/// A duration that must not be zero (a zero deadline would refuse everything).
pub fn positive_duration(node: &Node, name: &str, diags: &mut Diagnostics) -> Option<Duration> {
    let d = duration(node, name, diags)?;
    if d.is_zero() {
        diags.push(
            Diagnostic::at(&node.loc, format!("{name} must be longer than 0")).hint("write e.g. \"10s\""),
        );
        return None;
    }
    Some(d)
}

pub fn byte_size(node: &Node, name: &str, diags: &mut Diagnostics) -> Option<u64> {
    let parsed = match &node.value {
        Value::Int(i) if *i >= 0 => Some(*i as u64),
        Value::Str(s) => parse_byte_size(s),
        _ => None,
    };
    match parsed {
        Some(n) => Some(n),
        None => {
            diags.push(
                Diagnostic::at(&node.loc, format!("{name} is not a valid size"))
                    .hint("write a number with a unit: \"512KiB\", \"10MiB\", \"1GiB\""),
            );
            None
        }
    }
}

pub fn parse_byte_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mul: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mul)
}

/// A listen address: `"127.0.0.1:8080"`, `"[::1]:8443"`, `"0.0.0.0:80"`.
pub fn socket_addr(node: &Node, name: &str, diags: &mut Diagnostics) -> Option<SocketAddr> {
    let s = string(node, name, diags)?;
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            diags.push(
                Diagnostic::at(&node.loc, format!("{name}: `{s}` is not an IP address and port"))
                    .hint("write it as \"127.0.0.1:8080\" or \"[::1]:8080\""),
            );
            None
        }
    }
}

/// A network in CIDR notation, or a single address.
pub fn cidr(node: &Node, name: &str, diags: &mut Diagnostics) -> Option<ipnet::IpNet> {
    let s = string(node, name, diags)?;
    if let Ok(net) = s.parse::<ipnet::IpNet>() {
        return Some(net.trunc());
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Some(ip.into());
    }
    diags.push(
        Diagnostic::at(&node.loc, format!("{name}: `{s}` is not a network"))
            .hint("write an address or a CIDR network: \"10.0.0.5\", \"192.0.2.0/24\", \"2001:db8::/32\""),
    );
    None
}

/// A regular expression, compiled once here.
pub fn regex(node: &Node, name: &str, diags: &mut Diagnostics) -> Option<regex::Regex> {
    let s = string(node, name, diags)?;
    match regex::Regex::new(&s) {
        Ok(r) => Some(r),
        Err(e) => {
            let first = e.to_string();
            let short = first.lines().last().unwrap_or("").trim().to_string();
            diags.push(
                Diagnostic::at(&node.loc, format!("{name}: invalid regular expression: {short}")).hint(
                    "the syntax is Rust's `regex` crate (like RE2); escape `.` as `\\\\.` in TOML strings",
                ),
            );
            None
        }
    }
}

/// A string value with its location, so that errors found later (reading a file it names) point
/// at the key.
pub fn located_string(
    node: &Node,
    name: &str,
    diags: &mut Diagnostics,
) -> Option<super::source::Located<String>> {
    string(node, name, diags).map(|value| super::source::Located {
        value,
        loc: node.loc.clone(),
    })
}

/// A path value with its location (see [`located_string`]).
pub fn located_path(
    node: &Node,
    name: &str,
    diags: &mut Diagnostics,
) -> Option<super::source::Located<std::path::PathBuf>> {
    located_string(node, name, diags).map(|s| super::source::Located {
        value: s.value.into(),
        loc: s.loc,
    })
}

/// A string that must be one of `choices`.
pub fn one_of(
    choices: &'static [&'static str],
) -> impl Fn(&Node, &str, &mut Diagnostics) -> Option<&'static str> {
    move |node, name, diags| {
        let s = string(node, name, diags)?;
        if let Some(c) = choices.iter().find(|c| **c == s) {
            return Some(c);
        }
        let mut d = Diagnostic::at(
            &node.loc,
            format!("{name}: `{s}` is not one of {}", choices.join(", ")),
        );
        if let Some(c) = did_you_mean(&s, choices.iter().copied()) {
            d = d.hint(format!("did you mean `{c}`?"));
        }
        diags.push(d);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_byte_size("100MiB"), Some(100 << 20));
        assert_eq!(parse_byte_size("50m"), Some(50 << 20));
        assert_eq!(parse_byte_size("512KB"), Some(512 << 10));
        assert_eq!(parse_byte_size("17"), Some(17));
        assert!(parse_byte_size("1TB").is_none());
        assert!(parse_byte_size("lots").is_none());
    }
}
