//! `vestibule generate man|SHELL` (hidden): the man page and shell completions, generated from the
//! same clap definition that parses the command line, so they never drift from it. The package
//! build runs it (packaging/build).

use clap::CommandFactory;

use super::out::errln;
use super::Cli;

pub fn generate(what: &str) -> i32 {
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    let written = match what {
        "man" => clap_mangen::Man::new(cmd).render(&mut out),
        shell => match shell.parse::<clap_complete::Shell>() {
            Ok(sh) => {
                clap_complete::generate(sh, &mut cmd, "vestibule", &mut out);
                Ok(())
            }
            Err(_) => {
                errln!("vestibule generate: `{what}` is neither `man` nor a shell (bash, zsh, fish, elvish, powershell)");
                return 2;
            }
        },
    };
    match written {
        Ok(()) => 0,
        Err(e) => {
            errln!("vestibule generate: writing to standard output: {e}");
            2
        }
    }
}
