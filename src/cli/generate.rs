//! `vestibule generate man DIR | SHELL` (hidden): the man pages and shell completions, generated
//! from the same clap definition that parses the command line, so they never drift from it. The
//! package build runs it (packaging/build).

use clap::CommandFactory;

use super::out::errln;
use super::Cli;

/// `man DIR`: vestibule.1 and one page per command (vestibule-run.1, vestibule-vhost-new.1, ...)
/// into DIR. A shell name: its completion script on stdout.
pub fn generate(what: &str, dir: Option<&std::path::Path>) -> i32 {
    let mut cmd = Cli::command();
    let written = match (what, dir) {
        ("man", Some(dir)) => clap_mangen::generate_to(cmd, dir)
            .map_err(|e| format!("writing the man pages into {}: {e}", dir.display())),
        ("man", None) => Err("`generate man` needs the directory to write the pages into".into()),
        (shell, _) => match shell.parse::<clap_complete::Shell>() {
            Ok(sh) => {
                clap_complete::generate(sh, &mut cmd, "vestibule", &mut std::io::stdout().lock());
                Ok(())
            }
            Err(_) => Err(format!(
                "`{what}` is neither `man` nor a shell (bash, zsh, fish, elvish, powershell)"
            )),
        },
    };
    match written {
        Ok(()) => 0,
        Err(e) => {
            errln!("vestibule generate: {e}");
            2
        }
    }
}
