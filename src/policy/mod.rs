//! Request and response policies applied by the proxy. Each is a pure function over headers so it
//! can be unit-tested without sockets; the proxy only decides when to call them.

pub mod embed;
pub mod forwarded;
pub(crate) mod framing;
pub(crate) mod headers;
pub(crate) mod onlyoffice;
pub(crate) mod path;
pub(crate) mod remote_cluster;
