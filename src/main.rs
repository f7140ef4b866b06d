//! vestibule's entry point: parse the command line, dispatch, exit with the mode's code.

#![deny(unsafe_code)]

use clap::Parser;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    // Run through the /usr/sbin/sendmail link: sendmail's own command line, not vestibule's.
    let mut argv = std::env::args_os();
    let name = argv.next().map(std::path::PathBuf::from);
    if name
        .as_deref()
        .and_then(|n| n.file_name())
        .is_some_and(|n| n == "sendmail")
    {
        let args = argv.map(|a| a.to_string_lossy().into_owned()).collect();
        std::process::exit(vestibule::cli::sendmail::sendmail(args));
    }
    let cli = vestibule::cli::Cli::parse();
    std::process::exit(vestibule::cli::dispatch(cli));
}
