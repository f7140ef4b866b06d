//! Request and response policies applied by the proxy. Each is a pure function over headers so it
//! can be unit-tested without sockets; the proxy only decides when to call them.

pub mod embed;
pub mod forwarded;
pub mod framing;
pub mod headers;
pub mod onlyoffice;
pub mod path;
pub mod remote_cluster;
