//! `[embed]` in a vhost: the origins allowed to frame it.

use crate::config::diag::{Diagnostic, Diagnostics};
use crate::config::read::{self, TableReader};
use crate::config::source::Node;

/// `[embed] allow_origins = ["https://webapp.example.org"]`.
pub fn read_embed(
    node: &Node,
    what: &str,
    diags: &mut Diagnostics,
) -> Option<Vec<crate::policy::embed::Origin>> {
    let mut t = TableReader::new(node, format!("[embed] of {what}"), diags)?;
    let origins = t.opt(
        "allow_origins",
        diags,
        read::list(|n, name, d| {
            let s = read::string(n, name, d)?;
            match s.parse::<crate::policy::embed::Origin>() {
                Ok(o) => Some(o),
                Err(e) => {
                    d.error(&n.loc, format!("{name}: {e}"));
                    None
                }
            }
        }),
    );
    let has = t.get("allow_origins").is_some();
    t.finish(diags);
    if !has {
        diags.push(
            Diagnostic::at(&node.loc, format!("[embed] of {what} has no `allow_origins`"))
                .hint("add allow_origins = [\"https://webapp.example.org\"]"),
        );
    }
    origins
}
