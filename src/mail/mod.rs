//! The `mail` module: the built-in SMTP relay (spec/mail-relay.md).
//!
//! So far: [`session`], the SMTP server protocol state machine (no I/O, unit-tested). The listener,
//! the durable spool and delivery with lettre build on it.

pub mod session;
