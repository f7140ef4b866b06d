//! vestibule: one daemon in front of Mattermost, ONLYOFFICE Docs and Kopano WebApp.
//!
//! ```text
//! client --:80/:443--> router (Host -> vhost -> route) --> request policy --> upstream pool --> app
//!        <--------------------------- response policy <------------------------------------
//! Prometheus --> admin :9180 /metrics, /healthz
//! ```
//!
//! vestibule does not do its own HTTP parsing or connection handling: pingora does. What lives here is
//! configuration (`config`), the module lifecycle (`module`), routing and pools (`proxy`), header
//! policies (`policy`) and operations (`admin`, `reload`). See DESIGN.md for the whole picture.
//!
//! No `unsafe` outside the few places that must call the OS directly (descriptor passing in
//! `handover`, signal dispositions in `cli::run`, FIFOs in tests), each allowed there with its
//! `SAFETY:` reasoning.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub(crate) mod access_log;
pub(crate) mod admin;
pub(crate) mod app;
pub mod cli;
pub(crate) mod config;
pub(crate) mod dns;
pub(crate) mod drain;
pub(crate) mod files;
pub(crate) mod handover;
pub mod host;
pub(crate) mod listen;
pub(crate) mod logging;
pub mod mail;
pub(crate) mod metrics;
pub(crate) mod module;
pub mod policy;
pub(crate) mod proxy;
pub(crate) mod push;
pub(crate) mod secret;
pub(crate) mod tls;
