//! Unit tests of the embedding policy, one file per part: the CSP rewrite, origin parsing and the
//! whole-response rewrite the proxy calls. The fixtures below are shared by all three.

use super::{FrameAncestors, Origin};

mod csp;
mod origin;
mod response;

fn origin(s: &str) -> Origin {
    match s.parse() {
        Ok(o) => o,
        Err(e) => panic!("{s:?} should parse: {e}"),
    }
}

/// One allowed origin: the Kopano WebApp of the spec.
fn webapp() -> FrameAncestors {
    FrameAncestors::new(&[origin("https://webapp.example.org")])
}
