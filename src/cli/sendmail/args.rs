//! sendmail's command line, as cron, PHP, unattended-upgrades and Mattermost use it: Postfix's and
//! Sendmail's options are accepted where they make sense for a null client, the rest refused with
//! exit 64 (EX_USAGE) so that a caller expecting another mode (`-bs`, `-bp`, `-q`) does not think
//! it worked.

use std::path::PathBuf;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// `-t`: recipients from To:, Cc: and Bcc: (added to those on the command line).
    pub from_headers: bool,
    /// `-i` / `-oi`: a line with a single `.` is not the end of the message.
    pub ignore_dots: bool,
    /// `-f ADDR` / `-r ADDR`: the envelope sender (`<>` for none).
    pub sender: Option<String>,
    /// `-F NAME`: the full name for a From: header we add.
    pub full_name: Option<String>,
    /// `-C FILE`: vestibule's main configuration file.
    pub config: Option<PathBuf>,
    pub recipients: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgsError {
    #[error("option -{0} needs a value")]
    MissingValue(char),
    #[error("-b{0} is not supported: vestibule's sendmail only submits messages (-bm); see `mail queue` for the queue")]
    Mode(String),
    #[error("-q (queue run) is not supported: use `vestibule mail flush`")]
    QueueRun,
    #[error("unknown option -{0}")]
    Unknown(String),
}

/// Options that take a value and are accepted without effect: -B body type (8BITMIME is passed
/// through as is), -N DSN notify, -R DSN return, -V envelope id, -X log file, -O option, -L label.
const IGNORED_WITH_VALUE: &[char] = &['B', 'N', 'R', 'V', 'X', 'O', 'L', 'h'];
/// Flags accepted without effect: -v verbose, -n no aliasing, -m me too, -U initial submission,
/// -G gateway, -A (submission variant), -d debug.
const IGNORED_FLAGS: &[char] = &['v', 'n', 'm', 'U', 'G', 'A', 'd'];

pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Args, ArgsError> {
    let mut out = Args::default();
    let mut it = args.into_iter();
    let mut options_done = false;
    while let Some(arg) = it.next() {
        if options_done || !arg.starts_with('-') || arg == "-" {
            out.recipients.push(arg);
            continue;
        }
        if arg == "--" {
            options_done = true;
            continue;
        }
        let mut chars = arg[1..].chars();
        let Some(opt) = chars.next() else { continue };
        let rest: String = chars.collect();
        // The value is the rest of the word, or the next word.
        let value = |it: &mut I::IntoIter| -> Result<String, ArgsError> {
            if rest.is_empty() {
                it.next().ok_or(ArgsError::MissingValue(opt))
            } else {
                Ok(rest.clone())
            }
        };
        match opt {
            't' if rest.is_empty() => out.from_headers = true,
            'i' if rest.is_empty() => out.ignore_dots = true,
            'f' | 'r' => out.sender = Some(value(&mut it)?),
            'F' => out.full_name = Some(value(&mut it)?),
            'C' => out.config = Some(PathBuf::from(value(&mut it)?)),
            // -oi like -i; every other -oX (-oem, -odb, -odi, -oQ...) is a Sendmail tuning knob.
            'o' => {
                if rest == "i" {
                    out.ignore_dots = true;
                }
            }
            'b' => match rest.as_str() {
                "m" => {}
                mode => return Err(ArgsError::Mode(mode.to_string())),
            },
            'q' => return Err(ArgsError::QueueRun),
            c if IGNORED_WITH_VALUE.contains(&c) => {
                value(&mut it)?;
            }
            c if IGNORED_FLAGS.contains(&c) => {}
            _ => return Err(ArgsError::Unknown(arg[1..].to_string())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, ArgsError> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn what_cron_php_and_unattended_upgrades_send() {
        // Debian's cron.
        let a = p(&["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"]).unwrap();
        assert_eq!(a.full_name.as_deref(), Some("CronDaemon"));
        assert!(a.ignore_dots && !a.from_headers);
        assert_eq!(a.recipients, ["root"]);
        // PHP's default and unattended-upgrades.
        let a = p(&["-t", "-i"]).unwrap();
        assert!(a.from_headers && a.ignore_dots && a.recipients.is_empty());
        let a = p(&["-oi", "-t"]).unwrap();
        assert!(a.from_headers && a.ignore_dots);
        let a = p(&["-f", "bounce@example.org", "-t", "a@example.org", "b@example.org"]).unwrap();
        assert_eq!(a.sender.as_deref(), Some("bounce@example.org"));
        assert_eq!(a.recipients, ["a@example.org", "b@example.org"]);
        assert_eq!(p(&["-fme@x.org"]).unwrap().sender.as_deref(), Some("me@x.org"));
        assert_eq!(
            p(&["-C", "/etc/v.toml"]).unwrap().config,
            Some("/etc/v.toml".into())
        );
        assert_eq!(
            p(&["--", "-odd@example.org"]).unwrap().recipients,
            ["-odd@example.org"]
        );
    }

    #[test]
    fn other_modes_and_unknown_options_are_refused() {
        assert_eq!(p(&["-bs"]), Err(ArgsError::Mode("s".into())));
        assert_eq!(p(&["-bp"]), Err(ArgsError::Mode("p".into())));
        assert_eq!(p(&["-q"]), Err(ArgsError::QueueRun));
        assert_eq!(p(&["-f"]), Err(ArgsError::MissingValue('f')));
        assert_eq!(p(&["-Z"]), Err(ArgsError::Unknown("Z".into())));
        assert!(p(&["-bm", "x@example.org"]).is_ok());
    }
}
