//! Everything the command-line modes print goes through here.
//!
//! `println!` panics when stdout is a closed pipe (`vestibule mail queue | head -1` exited 101 with a
//! panic message). A reader that stops reading has what it wanted, so a broken pipe on stdout ends
//! the command at once with status 0, as ripgrep does. Other stdout failures (disk full behind a
//! redirection) end it with status 2 and a message, since the output is incomplete.
//!
//! Failures to write to stderr are ignored instead: the exit status still has to say whether, for
//! instance, the configuration is valid (`vestibule check 2>&1 | head -1` under `pipefail`).

use std::fmt;
use std::io::{self, Write};

/// Print to stdout (use through [`out!`] and [`outln!`]).
pub fn stdout(args: fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    // Flushed at once: a failure must surface here, not in the exit-time flush that Rust ignores.
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        stderr(format_args!("vestibule: cannot write to stdout: {e}\n"));
        std::process::exit(2);
    }
}

/// Print to stderr, ignoring failures (use through [`errln!`]).
pub fn stderr(args: fmt::Arguments<'_>) {
    let _ = io::stderr().lock().write_fmt(args);
}

/// `print!` that ends the process quietly on a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::out::stdout(format_args!($($arg)*)) };
}

/// `println!` that ends the process quietly on a closed pipe.
macro_rules! outln {
    () => { $crate::cli::out::stdout(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::cli::out::stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cli::out::stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// A command-line error: one `vestibule: ` prefix, then the message (ripgrep's style). Hints go on
/// the following lines, indented, through [`errln!`].
macro_rules! fail {
    ($($arg:tt)*) => {
        $crate::cli::out::stderr(format_args!("vestibule: {}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {errln, fail, out, outln};

/// `n` and `noun`, in the plural unless `n` is 1: `1 error`, `3 errors`, `0 names`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A configuration that does not load: every diagnostic, then the count.
pub fn invalid(diags: &crate::config::Diagnostics) {
    errln!("{diags}");
    fail!("configuration is invalid ({})", count(diags.len(), "error"));
}

/// A loaded configuration provisioned as `vestibule check` does it (every module, binding nothing),
/// for the commands that act on it; or, its errors printed, the exit code 1.
pub fn provisioned(
    loaded: (Option<crate::config::Config>, crate::config::Diagnostics),
) -> Result<(crate::config::Config, crate::app::Modules), i32> {
    let ctx = crate::module::Context::for_config(loaded.0.as_ref()).map_err(|e| {
        fail!("{e}");
        1
    })?;
    crate::app::provision_all(loaded, &ctx, None).map_err(|diags| {
        invalid(&diags);
        1
    })
}
