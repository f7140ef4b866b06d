//! vestibule's entry point: parse the command line, dispatch, exit with the mode's code.

#![deny(unsafe_code)]

use clap::Parser;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let cli = vestibule::cli::Cli::parse();
    std::process::exit(vestibule::cli::dispatch(cli));
}
