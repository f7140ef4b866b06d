//! Initial passwords for created users, from the operating system's CSPRNG.
//!
//! Mattermost's default policy (`PasswordSettings`) asks for 8 to 72 characters and no character
//! classes; an admin may require lowercase, uppercase, digits and symbols. A generated password
//! has 20 characters with at least one of each class, so it passes the strictest settings too.
//! Each character is drawn uniformly (rejection sampling in `rand`), and the mandatory classes'
//! positions are shuffled, so no position is predictable.

use rand::seq::SliceRandom;
use rand::Rng;

const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const DIGITS: &[u8] = b"23456789";
/// From Mattermost's symbol set (`PasswordSpecialChars`: no braces, no space), without quotes,
/// backquote and backslash (awkward to hand on or type).
const SYMBOLS: &[u8] = b"!#$%&()*+,-./:;<=>?@[]^_|~";

/// Length of a generated password, unless the server asks for more.
pub const LENGTH: usize = 20;

/// The length to generate for a server whose `PasswordSettings.MinimumLength` is `minimum`: at least
/// [`LENGTH`], at most Mattermost's 72.
pub fn length_for(minimum: Option<u64>) -> usize {
    minimum.map_or(LENGTH, |m| usize::try_from(m).unwrap_or(72).clamp(LENGTH, 72))
}

/// A new random password of `len` characters meeting any of Mattermost's password policies.
pub fn generate(len: usize) -> String {
    let mut rng = rand::rngs::OsRng;
    let all: Vec<u8> = [LOWER, UPPER, DIGITS, SYMBOLS].concat();
    let mut chars: Vec<u8> = [LOWER, UPPER, DIGITS, SYMBOLS]
        .iter()
        .map(|class| class[rng.gen_range(0..class.len())])
        .collect();
    while chars.len() < len {
        chars.push(all[rng.gen_range(0..all.len())]);
    }
    chars.shuffle(&mut rng);
    chars.into_iter().map(char::from).collect()
}

#[cfg(test)]
/// Whether `password` meets Mattermost's policy with every class required and `min` length.
pub fn meets_strict_policy(password: &str, min: usize) -> bool {
    let has = |set: &[u8]| password.bytes().any(|b| set.contains(&b));
    (min..=72).contains(&password.len())
        && password.bytes().any(|b| b.is_ascii_lowercase())
        && password.bytes().any(|b| b.is_ascii_uppercase())
        && password.bytes().any(|b| b.is_ascii_digit())
        && has(b"!\"\\#$%&'()*+,-./:;<=>?@[]^_`|~")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_password_meets_the_strictest_policy_and_they_differ() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2_000 {
            let p = generate(LENGTH);
            assert_eq!(p.len(), LENGTH);
            assert!(meets_strict_policy(&p, 8), "{p}");
            assert!(seen.insert(p), "a password repeated");
        }
    }

    #[test]
    fn every_character_of_the_alphabet_turns_up() {
        // A biased or truncated draw would leave some characters out over 2,000 x 20 draws.
        let mut counts = std::collections::HashMap::new();
        for _ in 0..2_000 {
            for c in generate(LENGTH).chars() {
                *counts.entry(c).or_insert(0u32) += 1;
            }
        }
        let alphabet = LOWER.len() + UPPER.len() + DIGITS.len() + SYMBOLS.len();
        assert_eq!(counts.len(), alphabet);
    }

    #[test]
    fn the_policy_check_refuses_what_mattermost_would() {
        assert!(!meets_strict_policy("short1A!", 10));
        assert!(!meets_strict_policy("alllowercase1!", 8));
        assert!(meets_strict_policy("Abcdefg1!", 8));
    }

    #[test]
    fn a_server_asking_for_longer_passwords_gets_them() {
        assert_eq!(length_for(None), LENGTH);
        assert_eq!(length_for(Some(8)), LENGTH);
        assert_eq!(length_for(Some(40)), 40);
        assert_eq!(length_for(Some(500)), 72);
        assert!(meets_strict_policy(&generate(length_for(Some(40))), 40));
    }
}
