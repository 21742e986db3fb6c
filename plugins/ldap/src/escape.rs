//! Escaping of untrusted text before it enters an LDAP search filter (RFC 4515) or a
//! distinguished name (RFC 4514), and the operator's templates that use them.
//!
//! A username is never pasted into a filter or DN as typed: `*)(uid=*` would widen a
//! search to every user, and `admin,ou=x` would bind as someone else. Templates escape
//! each placeholder for the place it lands in, so no caller can forget to. The
//! escaping itself is `ldap3`'s (`ldap_escape` for filters: `*`, `(`, `)`, `\` and NUL
//! become `\2a`, `\28`, `\29`, `\5c`, `\00`; `dn_escape` for DN values: `"`, `+`, `,`,
//! `;`, `<`, `>`, `=`, `\`, NUL, a leading space or `#` and a trailing space become
//! `\XX` hex escapes); UTF-8 stays as it is in both.

use std::fmt::Write as _;

/// Escapes every byte of a binary value (such as an Active Directory `objectGUID`) for
/// an RFC 4515 filter assertion. (Text values go through `ldap3::ldap_escape`, which
/// escapes only the metacharacters; a GUID's bytes are not text.)
pub fn escape_filter_bytes(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value {
        let _ = write!(out, "\\{b:02x}");
    }
    out
}

/// A placeholder an operator may write in a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// `{username}`: the login the person typed, or the entry's username attribute.
    Username,
    /// `{dn}`: the user's distinguished name.
    Dn,
}

impl Placeholder {
    fn name(self) -> &'static str {
        match self {
            Placeholder::Username => "username",
            Placeholder::Dn => "dn",
        }
    }
}

/// Where a template's output goes, which decides how placeholders are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A search filter: RFC 4515.
    Filter,
    /// A distinguished name: RFC 4514.
    Dn,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Value(Placeholder),
}

/// The values to put into a template, unescaped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Values<'a> {
    /// Replaces `{username}`.
    pub username: &'a str,
    /// Replaces `{dn}`.
    pub dn: &'a str,
}

/// An operator's template such as `(&(objectClass=person)(uid={username}))`, parsed
/// once at config load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    target: Target,
    parts: Vec<Part>,
    text: String,
}

impl Template {
    /// Parses `text`, accepting only the `allowed` placeholders and requiring at least
    /// one of them. Errors say what is wrong, for the config message.
    pub fn parse(text: &str, target: Target, allowed: &[Placeholder]) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            literal.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' in {text:?}"))?;
            let name = &after[..close];
            let placeholder = allowed
                .iter()
                .copied()
                .find(|p| p.name() == name)
                .ok_or_else(|| {
                    let names: Vec<String> = allowed
                        .iter()
                        .map(|p| format!("{{{}}}", p.name()))
                        .collect();
                    format!(
                        "unknown placeholder {{{name}}} in {text:?} (allowed: {})",
                        names.join(", ")
                    )
                })?;
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Value(placeholder));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("stray '}}' in {text:?}"));
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if !parts.iter().any(|p| matches!(p, Part::Value(_))) {
            let names: Vec<String> = allowed
                .iter()
                .map(|p| format!("{{{}}}", p.name()))
                .collect();
            return Err(format!("{text:?} must contain {}", names.join(" or ")));
        }
        Ok(Template {
            target,
            parts,
            text: text.to_owned(),
        })
    }

    /// The template as the operator wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Fills the template, escaping each value for the template's target. Values are
    /// substituted in one pass, so a value that looks like a placeholder stays text.
    pub fn render(&self, values: Values<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Value(p) => {
                    let raw = match p {
                        Placeholder::Username => values.username,
                        Placeholder::Dn => values.dn,
                    };
                    out.push_str(&match self.target {
                        Target::Filter => ldap3::ldap_escape(raw),
                        Target::Dn => ldap3::dn_escape(raw),
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a filter template makes of one value.
    fn in_filter(value: &str) -> String {
        Template::parse("{username}", Target::Filter, &[Placeholder::Username])
            .unwrap()
            .render(Values {
                username: value,
                dn: "",
            })
    }

    /// What a DN template makes of one value.
    fn in_dn(value: &str) -> String {
        Template::parse("{username}", Target::Dn, &[Placeholder::Username])
            .unwrap()
            .render(Values {
                username: value,
                dn: "",
            })
    }

    #[test]
    fn filter_escaping_neutralises_every_special_character() {
        assert_eq!(in_filter("ada"), "ada");
        assert_eq!(in_filter("*"), "\\2a");
        assert_eq!(in_filter("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
        assert_eq!(in_filter("admin)(|(uid=*"), "admin\\29\\28|\\28uid=\\2a");
        assert_eq!(in_filter("a\\b"), "a\\5cb");
        assert_eq!(in_filter("nul\0"), "nul\\00");
        // RFC 4515 examples.
        assert_eq!(
            in_filter("Parens R Us (for all your parenthetical needs)"),
            "Parens R Us \\28for all your parenthetical needs\\29"
        );
        assert_eq!(in_filter("\\2a"), "\\5c2a");
    }

    #[test]
    fn filter_escaping_keeps_utf8_and_other_punctuation() {
        assert_eq!(in_filter("jürgen"), "jürgen");
        assert_eq!(in_filter("名前"), "名前");
        assert_eq!(in_filter("a=b,c&|!~<>"), "a=b,c&|!~<>");
    }

    #[test]
    fn escaped_injection_attempts_parse_as_a_single_equality_filter() {
        let template =
            Template::parse("(uid={username})", Target::Filter, &[Placeholder::Username]).unwrap();
        for attack in ["*)(uid=*", "admin)(|(uid=*", "*", "\\", "(", ")", "x\0y"] {
            let filter = template.render(Values {
                username: attack,
                dn: "",
            });
            assert!(
                ldap3::parse_filter(&filter).is_ok(),
                "{filter} does not parse"
            );
            // The whole attack must have become one value: no unescaped metacharacter
            // is left between the outer parentheses.
            let inner = &filter[1..filter.len() - 1];
            assert!(!inner.contains(['(', ')', '*', '\0']), "{filter}");
        }
    }

    #[test]
    fn binary_values_escape_every_byte() {
        assert_eq!(escape_filter_bytes(&[0x00, 0x2a, 0xff]), "\\00\\2a\\ff");
        assert_eq!(escape_filter_bytes(b"ab"), "\\61\\62");
    }

    #[test]
    fn dn_escaping_follows_rfc4514() {
        assert_eq!(in_dn("ada"), "ada");
        assert_eq!(in_dn("Smith, John"), "Smith\\2c John");
        assert_eq!(in_dn("a+b"), "a\\2bb");
        assert_eq!(in_dn("x=y"), "x\\3dy");
        assert_eq!(in_dn("\"q\";<>\\"), "\\22q\\22\\3b\\3c\\3e\\5c");
        assert_eq!(in_dn("#hash"), "\\23hash");
        assert_eq!(in_dn("mid#hash"), "mid#hash");
        assert_eq!(in_dn(" lead"), "\\20lead");
        assert_eq!(in_dn("trail "), "trail\\20");
        assert_eq!(in_dn(" "), "\\20");
        assert_eq!(in_dn("in side"), "in side");
        assert_eq!(in_dn("nul\0"), "nul\\00");
        assert_eq!(in_dn("jürgen"), "jürgen");
        assert_eq!(in_dn("*()"), "*()");
    }

    #[test]
    fn dn_escaping_stops_a_username_from_adding_rdns() {
        let t = Template::parse(
            "uid={username},ou=people,dc=example,dc=org",
            Target::Dn,
            &[Placeholder::Username],
        )
        .unwrap();
        for attack in ["admin,ou=admins", "admin+cn=root", "x;ou=y", "\\,ou=z"] {
            let dn = t.render(Values {
                username: attack,
                dn: "",
            });
            let value = dn
                .strip_prefix("uid=")
                .and_then(|rest| rest.strip_suffix(",ou=people,dc=example,dc=org"))
                .unwrap();
            // No separator or unescaped backslash pair is left: the value stays one RDN.
            assert!(!value.contains([',', '+', ';', '=']), "{dn}");
        }
        let dn = t.render(Values {
            username: "admin,ou=admins",
            dn: "",
        });
        assert_eq!(dn, "uid=admin\\2cou\\3dadmins,ou=people,dc=example,dc=org");
    }

    #[test]
    fn filter_templates_escape_each_placeholder() {
        let t = Template::parse(
            "(&(objectClass=groupOfNames)(|(member={dn})(memberUid={username})))",
            Target::Filter,
            &[Placeholder::Dn, Placeholder::Username],
        )
        .unwrap();
        let f = t.render(Values {
            username: "a*",
            dn: "uid=a\\2a,dc=x",
        });
        assert_eq!(
            f,
            "(&(objectClass=groupOfNames)(|(member=uid=a\\5c2a,dc=x)(memberUid=a\\2a)))"
        );
    }

    #[test]
    fn a_value_that_looks_like_a_placeholder_is_not_substituted_again() {
        let t = Template::parse(
            "(|(uid={username})(member={dn}))",
            Target::Filter,
            &[Placeholder::Username, Placeholder::Dn],
        )
        .unwrap();
        let f = t.render(Values {
            username: "{dn}",
            dn: "cn=x",
        });
        assert_eq!(f, "(|(uid={dn})(member=cn=x))");
    }

    #[test]
    fn templates_refuse_unknown_unclosed_or_missing_placeholders() {
        let only_user = [Placeholder::Username];
        let e = Template::parse("(uid={user})", Target::Filter, &only_user).unwrap_err();
        assert!(e.contains("unknown placeholder {user}"), "{e}");
        let e = Template::parse("(uid={dn})", Target::Filter, &only_user).unwrap_err();
        assert!(e.contains("allowed: {username}"), "{e}");
        let e = Template::parse("(uid={username)", Target::Filter, &only_user).unwrap_err();
        assert!(e.contains("unclosed"), "{e}");
        let e = Template::parse("(uid=x)", Target::Filter, &only_user).unwrap_err();
        assert!(e.contains("must contain {username}"), "{e}");
        let e = Template::parse("(uid={username}})", Target::Filter, &only_user).unwrap_err();
        assert!(e.contains("stray"), "{e}");
    }
}
