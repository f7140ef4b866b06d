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

pub mod access_log;
pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod dns;
pub mod drain;
pub mod files;
pub mod handover;
pub mod host;
pub mod listen;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod module;
pub mod policy;
pub mod proxy;
pub mod push;
pub mod secret;
pub mod tls;
