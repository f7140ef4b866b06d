//! vestibule: one daemon in front of Mattermost, ONLYOFFICE Docs and Kopano WebApp.
//!
//! ```text
//! client --:80/:443--> router (Host -> vhost -> route) --> request policy --> upstream pool --> app
//!        <--------------------------- response policy <------------------------------------
//! Prometheus --> admin :9180 /metrics, /healthz
//! ```
//!
//! HTTP parsing is pingora's; connections are vestibule's first (`listen`, `proxy::listener`,
//! `proxy::conn`: accept backoff, per-address caps, deadlines) and then pingora's. What lives here:
//! configuration with positions (`config`), the lifecycle every module follows (`module`) and the
//! loader that runs it over all of them (`app`), the modules themselves (`admin`, `tls`, `proxy`,
//! `push`, `mail`), pure header and path policies (`policy`), and operations (`handover` for
//! upgrades without downtime, `drain` for graceful stops, `access_log`, `metrics`). The README's
//! Architecture section tells the whole story.
//!
//! Public for the binary, the benchmarks and the tests only: `cli`, `host`, and parts of `mail` and
//! `policy`; everything else is `pub(crate)`.
//!
//! No `unsafe` outside the few places that must call the OS directly (descriptor passing in
//! `handover`, a websocket's client socket in `proxy::conn`, signal dispositions in `cli::run`, FIFOs
//! in tests), each allowed there with its
//! `SAFETY:` reasoning.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub(crate) mod access_log;
pub(crate) mod admin;
pub(crate) mod app;
pub mod cli;
pub(crate) mod config;
pub(crate) mod dns;
pub(crate) mod doctor;
pub(crate) mod drain;
pub(crate) mod files;
pub(crate) mod handover;
pub mod host;
pub(crate) mod integrate;
pub(crate) mod listen;
pub(crate) mod logging;
pub mod mail;
pub(crate) mod metrics;
pub(crate) mod module;
pub(crate) mod notify;
pub mod policy;
pub(crate) mod proxy;
pub(crate) mod push;
pub(crate) mod secret;
pub(crate) mod tls;
pub(crate) mod users;
