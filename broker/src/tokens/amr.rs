//! How a person authenticated, as ID tokens say it: `amr` (RFC 8176 method values) and
//! `acr` (one of this issuer's two levels).
//!
//! - a password here or at a password provider (local, LDAP): `["pwd"]`;
//! - a login at an upstream provider (OIDC, GitHub, …): `["fed"]` (the upstream's own
//!   methods are not passed through);
//! - then an authenticator code: `otp` and `mfa` added (`["pwd", "otp", "mfa"]`);
//!   a recovery code instead: `mfa` alone added (`["pwd", "mfa"]`).
//!
//! `acr` is [`ACR_MFA`] when `amr` has `mfa`, else [`ACR_PWD`] (one factor).

pub const PWD: &str = "pwd";
pub const FED: &str = "fed";
pub const OTP: &str = "otp";
pub const MFA: &str = "mfa";

/// One factor: a password, or a login at an upstream provider.
pub const ACR_PWD: &str = "urn:switchboard:acr:pwd";
/// A second factor after the first.
pub const ACR_MFA: &str = "urn:switchboard:acr:mfa";
/// What discovery advertises (`acr_values_supported`), weakest first.
pub const ACR_VALUES: [&str; 2] = [ACR_PWD, ACR_MFA];
/// The `amr` values this issuer puts in ID tokens.
pub const AMR_VALUES: [&str; 4] = [PWD, FED, OTP, MFA];

/// The methods of a first factor: a password form, or a trip upstream.
pub fn first_factor(password: bool) -> Vec<String> {
    vec![if password { PWD } else { FED }.to_string()]
}

/// `amr` after a second factor: `otp` for an authenticator code, and `mfa`.
pub fn with_second_factor(first: &[String], otp: bool) -> Vec<String> {
    let mut amr: Vec<String> = first
        .iter()
        .filter(|m| *m != OTP && *m != MFA)
        .cloned()
        .collect();
    if otp {
        amr.push(OTP.to_string());
    }
    amr.push(MFA.to_string());
    amr
}

pub fn has_mfa(amr: &[String]) -> bool {
    amr.iter().any(|m| m == MFA)
}

/// The `acr` of an authentication with these methods.
pub fn acr_for(amr: &[String]) -> &'static str {
    if has_mfa(amr) { ACR_MFA } else { ACR_PWD }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_levels_say_what_happened() {
        let pwd = first_factor(true);
        assert_eq!(pwd, ["pwd"]);
        assert_eq!(acr_for(&pwd), ACR_PWD);
        let otp = with_second_factor(&pwd, true);
        assert_eq!(otp, ["pwd", "otp", "mfa"]);
        assert_eq!(acr_for(&otp), ACR_MFA);
        assert_eq!(with_second_factor(&pwd, false), ["pwd", "mfa"]);
        assert_eq!(first_factor(false), ["fed"]);
        assert_eq!(acr_for(&[]), ACR_PWD);
        assert_eq!(
            with_second_factor(&otp, true),
            ["pwd", "otp", "mfa"],
            "a step-up never repeats a value"
        );
    }
}
