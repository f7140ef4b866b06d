//! `[onlyoffice]` in a vhost: the JWT relay rule and its optional verifier.

use crate::config::diag::{Diagnostic, Diagnostics};
use crate::config::read::{self, TableReader};
use crate::config::source::Node;

/// `[onlyoffice]`: move the Document Server's JWT between `Authorization` and the plugin's header.
pub fn read_onlyoffice(
    node: &Node,
    what: &str,
    diags: &mut Diagnostics,
) -> Option<crate::policy::onlyoffice::RelayRule> {
    use crate::policy::onlyoffice as oo;
    let label = format!("[onlyoffice] of {what}");
    let mut t = TableReader::new(node, label.clone(), diags)?;
    let direction = t.opt(
        "direction",
        diags,
        read::one_of(&["to-plugin", "to-document-server"]),
    );
    let header = t.opt("header", diags, read::string);
    let prefix = t.opt("prefix", diags, read::string);
    let paths = t.opt("paths", diags, read::regex);
    let secret = t.get("secret_file").and_then(|n| {
        read::string(n, &format!("`secret_file` in {label}"), diags).map(|s| (s, n.loc.clone()))
    });
    let algorithm = t.opt("algorithm", diags, read::one_of(&["HS256", "HS384", "HS512"]));
    t.finish(diags);
    let header = header.unwrap_or_else(|| oo::DEFAULT_CUSTOM_HEADER.to_string());
    let prefix = prefix.unwrap_or_else(|| oo::DEFAULT_PREFIX.to_string());
    let rule = if direction == Some("to-document-server") {
        let paths = paths.unwrap_or_else(|| regex::Regex::new("^/").expect("constant"));
        oo::RelayRule::new(&header, "Authorization", &prefix, paths)
    } else {
        let paths = paths.unwrap_or_else(|| regex::Regex::new(oo::DEFAULT_PATHS).expect("constant"));
        oo::RelayRule::new("Authorization", &header, &prefix, paths)
    };
    let mut rule = match rule {
        Ok(r) => r,
        Err(e) => {
            diags.error(&node.loc, format!("{label}: {e}"));
            return None;
        }
    };
    if let Some((path, loc)) = secret {
        let alg: oo::Algorithm = algorithm
            .unwrap_or("HS256")
            .parse()
            .unwrap_or(oo::Algorithm::HS256);
        match oo::Verifier::from_secret_file(alg, std::path::Path::new(&path)) {
            Ok(v) => rule = rule.with_verifier(v),
            Err(e) => {
                diags.push(Diagnostic::at(&loc, format!("`secret_file` in {label}: {e}")).hint(
                    "put the Document Server's JWT secret (DESJwt / JWT_SECRET) alone in a file owned by vestibule with mode 0600",
                ));
                return None;
            }
        }
    } else if algorithm.is_some() {
        diags.push(
            Diagnostic::at(
                &node.loc,
                format!("{label}: `algorithm` is set but there is no `secret_file` to verify with"),
            )
            .hint("add secret_file = \"/etc/vestibule/secrets/onlyoffice.jwt\" or remove `algorithm`"),
        );
    }
    Some(rule)
}
