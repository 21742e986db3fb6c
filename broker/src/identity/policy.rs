//! What a username, an email, a password and a managed group's name may be: the
//! operator's `[account_policy]` (anchored expressions, a minimum password length, a
//! check against common passwords), applied the same way by registration, password
//! reset and change, and the admin API.

use crate::config::AccountPolicy;
use zxcvbn::matching::patterns::MatchPattern;

/// The longest password accepted (argon2 takes any length; this bounds the work).
pub const MAX_PASSWORD_LEN: usize = 1024;
/// The longest username and email.
pub const MAX_USERNAME_LEN: usize = 128;
pub const MAX_EMAIL_LEN: usize = 254;

/// Why a value breaks the policy, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyViolation {
    #[error("a password has {min} to {MAX_PASSWORD_LEN} characters")]
    PasswordLength { min: usize },
    #[error("this password is too common or too easy to guess; choose another")]
    CommonPassword,
    #[error("the password does not meet this site's password rules")]
    PasswordPattern,
    #[error(
        "a username has 1 to {MAX_USERNAME_LEN} characters, without spaces at either end or control characters"
    )]
    UsernameForm,
    #[error("this username is not allowed here")]
    UsernamePattern,
    #[error("not an email address")]
    EmailForm,
    #[error("email addresses of this kind are not accepted here")]
    EmailPattern,
    #[error("this group name is not allowed here")]
    GroupNamePattern,
}

impl PolicyViolation {
    /// The reason for a page: a catalogue key (`msg.policy.…`) and its arguments.
    /// The English catalogue says what the `Display` text (for logs and API
    /// problems) says, as a sentence.
    pub fn message(&self) -> (&'static str, Vec<(&'static str, usize)>) {
        match self {
            Self::PasswordLength { min } => (
                "msg.policy.password_length",
                vec![("min", *min), ("max", MAX_PASSWORD_LEN)],
            ),
            Self::CommonPassword => ("msg.policy.common_password", Vec::new()),
            Self::PasswordPattern => ("msg.policy.password_pattern", Vec::new()),
            Self::UsernameForm => ("msg.policy.username_form", vec![("max", MAX_USERNAME_LEN)]),
            Self::UsernamePattern => ("msg.policy.username_pattern", Vec::new()),
            Self::EmailForm => ("msg.policy.email_form", Vec::new()),
            Self::EmailPattern => ("msg.policy.email_pattern", Vec::new()),
            Self::GroupNamePattern => ("msg.policy.group_name_pattern", Vec::new()),
        }
    }
}

impl AccountPolicy {
    /// Checks a new password; `inputs` are what the person typed elsewhere (username,
    /// email, name), which a password must not merely repeat.
    pub fn check_password(&self, password: &str, inputs: &[&str]) -> Result<(), PolicyViolation> {
        let length = password.chars().count();
        if length < self.min_password_length || length > MAX_PASSWORD_LEN {
            return Err(PolicyViolation::PasswordLength {
                min: self.min_password_length,
            });
        }
        if let Some(pattern) = &self.password_pattern
            && !pattern.is_match(password)
        {
            return Err(PolicyViolation::PasswordPattern);
        }
        if self.reject_common_passwords && is_common(password, inputs) {
            return Err(PolicyViolation::CommonPassword);
        }
        if self.banned_passwords.contains(&password.to_lowercase()) {
            return Err(PolicyViolation::CommonPassword);
        }
        Ok(())
    }

    pub fn check_username(&self, username: &str) -> Result<(), PolicyViolation> {
        let length = username.chars().count();
        if length == 0
            || length > MAX_USERNAME_LEN
            || username.trim() != username
            || username.chars().any(char::is_control)
        {
            return Err(PolicyViolation::UsernameForm);
        }
        match &self.username_pattern {
            Some(p) if !p.is_match(username) => Err(PolicyViolation::UsernamePattern),
            _ => Ok(()),
        }
    }

    pub fn check_email(&self, email: &str) -> Result<(), PolicyViolation> {
        if !well_formed_email(email) {
            return Err(PolicyViolation::EmailForm);
        }
        match &self.email_pattern {
            Some(p) if !p.is_match(email) => Err(PolicyViolation::EmailPattern),
            _ => Ok(()),
        }
    }

    /// The operator's pattern for managed group names (the built-in form rules are
    /// [`super::groups::check_group_name`]).
    pub fn check_group_name(&self, name: &str) -> Result<(), PolicyViolation> {
        match &self.group_name_pattern {
            Some(p) if !p.is_match(name) => Err(PolicyViolation::GroupNamePattern),
            _ => Ok(()),
        }
    }
}

/// `local@domain.tld`, at most 254 characters, no whitespace or control characters.
pub fn well_formed_email(email: &str) -> bool {
    email.chars().count() <= MAX_EMAIL_LEN
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
}

/// Whether a password is, as a whole, a common one: one entry (or a case, leet or
/// reversed variant of one) of zxcvbn's list of the 30,000 most common passwords or
/// of its dictionaries, a repeat (`aaaaaaaa`), a sequence (`12345678`), a keyboard
/// walk (`qwertyuiop`), a date, or one of the person's own inputs.
fn is_common(password: &str, inputs: &[&str]) -> bool {
    let inputs: Vec<&str> = inputs
        .iter()
        .copied()
        .filter(|i| !i.trim().is_empty())
        .collect();
    let entropy = zxcvbn::zxcvbn(password, &inputs);
    match entropy.sequence() {
        [only] => !matches!(only.pattern, MatchPattern::BruteForce),
        // Several pieces: weak only when the whole is still guessed quickly, like
        // "password1" or "iloveyou2".
        _ => entropy.guesses_log10() < 6.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn policy() -> AccountPolicy {
        AccountPolicy::default()
    }

    #[test]
    fn common_passwords_and_their_variants_are_refused() {
        let p = policy();
        for pw in [
            "password",
            "Password",
            "P@ssw0rd",
            "drowssap",
            "12345678",
            "qwertyuiop",
            "aaaaaaaaaa",
            "iloveyou",
            "password1",
            "football",
        ] {
            assert_eq!(
                p.check_password(pw, &[]),
                Err(PolicyViolation::CommonPassword),
                "{pw}"
            );
        }
    }

    #[test]
    fn a_password_that_only_repeats_the_username_is_refused() {
        let p = policy();
        assert_eq!(
            p.check_password("zebulon-quartz", &["zebulon-quartz"]),
            Err(PolicyViolation::CommonPassword)
        );
        assert!(p.check_password("zebulon-quartz", &[]).is_ok());
    }

    #[test]
    fn uncommon_passwords_pass() {
        let p = policy();
        for pw in [
            "correct horse battery",
            "Tr4in-Lamp-Orbit",
            "an old but good password",
        ] {
            assert_eq!(p.check_password(pw, &["alice"]), Ok(()), "{pw}");
        }
    }

    #[test]
    fn length_bounds_and_the_operator_pattern_apply() {
        let mut p = policy();
        assert_eq!(
            p.check_password("x7#", &[]),
            Err(PolicyViolation::PasswordLength { min: 8 })
        );
        p.min_password_length = 12;
        assert!(p.check_password("Tr4in-Lamp", &[]).is_err());
        p.password_pattern = Some(regex::Regex::new(r"^.*[0-9].*$").unwrap());
        assert_eq!(
            p.check_password("orbit lamp ferry", &[]),
            Err(PolicyViolation::PasswordPattern)
        );
        assert!(p.check_password("orbit lamp ferry 9", &[]).is_ok());
        let long = "x".repeat(MAX_PASSWORD_LEN + 1);
        assert!(p.check_password(&long, &[]).is_err());
    }

    #[test]
    fn the_operator_list_of_banned_passwords_applies_in_any_case() {
        let mut p = policy();
        p.banned_passwords = HashSet::from(["acme-winter-2026".to_string()]);
        assert_eq!(
            p.check_password("ACME-Winter-2026", &[]),
            Err(PolicyViolation::CommonPassword)
        );
    }

    #[test]
    fn usernames_and_emails_follow_form_and_pattern() {
        let mut p = policy();
        assert!(p.check_username("alice").is_ok());
        for bad in ["", " alice", "al\u{7}ice"] {
            assert_eq!(p.check_username(bad), Err(PolicyViolation::UsernameForm));
        }
        p.username_pattern = Some(regex::Regex::new(r"^[a-z][a-z0-9]{2,15}$").unwrap());
        assert_eq!(
            p.check_username("Alice"),
            Err(PolicyViolation::UsernamePattern)
        );
        assert!(p.check_email("a@example.com").is_ok());
        for bad in [
            "a@b",
            "@example.com",
            "a b@example.com",
            "a@@example.com",
            "a@.com",
        ] {
            assert_eq!(p.check_email(bad), Err(PolicyViolation::EmailForm), "{bad}");
        }
        p.email_pattern = Some(regex::Regex::new(r"^[^@]+@example\.com$").unwrap());
        assert_eq!(
            p.check_email("a@example.org"),
            Err(PolicyViolation::EmailPattern)
        );
        p.group_name_pattern = Some(regex::Regex::new(r"^team-[a-z]+$").unwrap());
        assert!(p.check_group_name("team-ops").is_ok());
        assert_eq!(
            p.check_group_name("ops"),
            Err(PolicyViolation::GroupNamePattern)
        );
    }
}
