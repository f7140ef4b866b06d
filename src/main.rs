//! vestibule's entry point: parse the command line, dispatch, exit with the mode's code.

use clap::Parser;

fn main() {
    let cli = vestibule::cli::Cli::parse();
    std::process::exit(vestibule::cli::dispatch(cli));
}
