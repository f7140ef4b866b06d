//! `[remote_cluster]` in a vhost: the networks allowed to call the server-to-server routes.

use crate::config::diag::Diagnostics;
use crate::config::read::{self, TableReader};
use crate::config::source::Node;

/// `[remote_cluster] allow = ["203.0.113.0/24"]`.
pub fn read_remote_cluster(node: &Node, what: &str, diags: &mut Diagnostics) -> Option<Vec<ipnet::IpNet>> {
    let mut t = TableReader::new(node, format!("[remote_cluster] of {what}"), diags)?;
    let allow = t.opt("allow", diags, read::list(read::cidr));
    t.finish(diags);
    Some(allow.unwrap_or_default())
}
