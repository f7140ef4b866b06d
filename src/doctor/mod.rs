//! `vestibule doctor`: one report of what is wrong with this installation, each line with its fix.
//!
//! Checks are independent functions from what they need to [`Line`]s, run in a fixed order so the
//! report reads the same every time; the worst status decides the exit code (0 OK, 1 WARN, 2 FAIL),
//! which is what monitoring keys on. Network checks carry their own deadline: a report that hangs
//! on one dead peer would say nothing about the others.

pub mod checks;
pub mod config;
pub mod dns;
pub mod embed;
pub mod http;
pub mod mattermost;
pub mod module;
pub mod onlyoffice;
pub mod push;
pub mod smarthost;

use std::fmt::Write as _;
use std::path::PathBuf;

/// Where the command line says the other products' configurations are; what it leaves out comes
/// from `[integrate]`, then the packaged locations.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Mattermost's config.json or REST API.
    pub mattermost: Option<crate::integrate::backend::Target>,
    /// Document Server's local.json.
    pub documentserver: Option<PathBuf>,
}

impl Sources {
    /// The flags, else `[integrate]`: Mattermost's back end and Document Server's local.json
    /// (`None`: the packaged location, if it exists).
    pub fn resolve(
        &self,
        integrate: &crate::integrate::IntegrateModule,
    ) -> (crate::integrate::backend::Target, Option<PathBuf>) {
        (
            self.mattermost
                .clone()
                .unwrap_or_else(|| integrate.mattermost.clone()),
            self.documentserver
                .clone()
                .or_else(|| integrate.documentserver_config.clone()),
        )
    }
}

/// How bad one finding is. Ordered: the report's status is the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    /// `OK`, `WARN`, `FAIL`: the first column of the report.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }

    /// The exit code of a report whose worst line has this status.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Warn => 1,
            Status::Fail => 2,
        }
    }
}

/// One finding: which check, what was found, and what to do (empty when nothing is to be done).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub status: Status,
    /// The check's name: `configuration`, `listeners`, ...
    pub check: &'static str,
    pub what: String,
    pub fix: String,
}

impl Line {
    pub fn ok(check: &'static str, what: impl Into<String>) -> Line {
        Line {
            status: Status::Ok,
            check,
            what: what.into(),
            fix: String::new(),
        }
    }

    pub fn warn(check: &'static str, what: impl Into<String>, fix: impl Into<String>) -> Line {
        Line {
            status: Status::Warn,
            check,
            what: what.into(),
            fix: fix.into(),
        }
    }

    pub fn fail(check: &'static str, what: impl Into<String>, fix: impl Into<String>) -> Line {
        Line {
            status: Status::Fail,
            check,
            what: what.into(),
            fix: fix.into(),
        }
    }
}

/// Every line of one run.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<Line>,
}

impl Report {
    /// The worst status found (OK for an empty report).
    pub fn status(&self) -> Status {
        self.lines.iter().map(|l| l.status).max().unwrap_or(Status::Ok)
    }

    /// A table: status, check, what, fix; columns aligned, the fix last so that it may be long.
    pub fn table(&self) -> String {
        let check_w = self.lines.iter().map(|l| l.check.len()).max().unwrap_or(0);
        let what_w = self.lines.iter().map(|l| l.what.len()).max().unwrap_or(0);
        let mut out = String::new();
        for l in &self.lines {
            let row = format!(
                "{:<4}  {:<check_w$}  {:<what_w$}  {}",
                l.status.label(),
                l.check,
                l.what,
                l.fix
            );
            let _ = writeln!(out, "{}", row.trim_end());
        }
        out
    }

    /// The report for monitoring: `{"status": "OK", "checks": [{status, check, what, fix}, ...]}`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "status": self.status().label(),
            "checks": self.lines.iter().map(|l| serde_json::json!({
                "status": l.status.label(),
                "check": l.check,
                "what": l.what,
                "fix": l.fix,
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_line_decides_the_exit_code() {
        let mut r = Report::default();
        assert_eq!(r.status().exit_code(), 0);
        r.lines.push(Line::ok("a", "fine"));
        assert_eq!(r.status().exit_code(), 0);
        r.lines.push(Line::warn("b", "soon", "do this"));
        assert_eq!(r.status().exit_code(), 1);
        r.lines.push(Line::fail("c", "broken", "do that"));
        r.lines.push(Line::ok("d", "fine"));
        assert_eq!(r.status().exit_code(), 2);
        assert_eq!(r.json()["status"], "FAIL");
        assert_eq!(r.json()["checks"][2]["fix"], "do that");
    }

    #[test]
    fn table_aligns_columns_and_ends_with_the_fix() {
        let r = Report {
            lines: vec![
                Line::ok("configuration", "valid"),
                Line::fail("listeners", "not running", "systemctl start vestibule"),
            ],
        };
        assert_eq!(
            r.table(),
            "OK    configuration  valid\nFAIL  listeners      not running  systemctl start vestibule\n"
        );
    }
}
