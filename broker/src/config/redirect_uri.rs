//! A registered redirect URI, kept exactly as written: `/authorize` and `/token`
//! compare the string, never a normalised form of it (RFC 6749 §3.1.2.3, RFC 9700
//! §4.1.3). The one allowance is RFC 8252 §7.3: a native client's loopback redirect
//! may name any port.

use url::Url;

/// A redirect URI as written, and what it parses to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectUri {
    text: String,
    url: Url,
}

impl RedirectUri {
    /// `text` if it is an absolute URL written without surrounding whitespace or
    /// control characters (which URL parsing would silently drop).
    pub fn parse(text: &str) -> Result<Self, RedirectUriError> {
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(RedirectUriError::Whitespace);
        }
        let url = Url::parse(text).map_err(RedirectUriError::NotAUrl)?;
        Ok(RedirectUri {
            text: text.to_string(),
            url,
        })
    }

    /// The URI exactly as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// What it parses to: where a browser is sent.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// An `http` URI whose host is a loopback IP literal (RFC 8252 §7.3; `localhost`
    /// is not one: it may resolve elsewhere, §8.3).
    pub fn is_loopback_ip_http(&self) -> bool {
        self.url.scheme() == "http"
            && match self.url.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                _ => false,
            }
    }

    /// Whether `requested` names this redirect URI: the same string, or, when
    /// `any_loopback_port` and this is a loopback IP `http` URI, the same string but
    /// for the port (present or not, any valid one).
    pub fn accepts(&self, requested: &str, any_loopback_port: bool) -> bool {
        if requested == self.text {
            return true;
        }
        if !any_loopback_port || !self.is_loopback_ip_http() {
            return false;
        }
        match (split_port(&self.text), split_port(requested)) {
            (Some((origin, _, rest)), Some((req_origin, req_port, req_rest))) => {
                origin == req_origin && rest == req_rest && req_port.is_none_or(is_port)
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for RedirectUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedirectUriError {
    #[error("must not contain whitespace or control characters")]
    Whitespace,
    #[error("not an absolute URL: {0}")]
    NotAUrl(url::ParseError),
}

/// `scheme://host`, the port digits if any, and everything after the authority, as
/// written. `None` without `://`.
fn split_port(text: &str) -> Option<(&str, Option<&str>, &str)> {
    let host_start = text.find("://")? + 3;
    let after = &text[host_start..];
    let authority_len = after.find(['/', '?', '#']).unwrap_or(after.len());
    let authority = &after[..authority_len];
    let host_len = match authority.strip_prefix('[') {
        Some(v6) => v6.find(']')? + 2,
        None => authority.find(':').unwrap_or(authority.len()),
    };
    let port = match &authority[host_len..] {
        "" => None,
        p => Some(p.strip_prefix(':')?),
    };
    Some((
        &text[..host_start + host_len],
        port,
        &after[authority_len..],
    ))
}

/// A TCP port written in canonical decimal (no sign, no leading zero), 1..=65535.
fn is_port(p: &str) -> bool {
    !p.starts_with('0') && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> RedirectUri {
        RedirectUri::parse(s).unwrap()
    }

    #[test]
    fn only_the_exact_string_is_accepted() {
        let r = uri("https://app.example/cb");
        assert!(r.accepts("https://app.example/cb", false));
        for other in [
            "https://app.example:443/cb",
            "https://APP.example/cb",
            "HTTPS://app.example/cb",
            "https://app.example/./cb",
            "https://app.example/x/../cb",
            "https://app.example/%63b",
            "https://app.example/cb/",
            "https://app.example/cb?x=1",
            "https://app.example/cb#",
            "https://app.example.evil/cb",
            " https://app.example/cb",
        ] {
            assert!(!r.accepts(other, true), "{other}");
        }
    }

    #[test]
    fn a_uri_is_kept_as_written() {
        let r = uri("https://app.example:443/cb");
        assert_eq!(r.as_str(), "https://app.example:443/cb");
        assert_eq!(r.url().as_str(), "https://app.example/cb");
        assert!(r.accepts("https://app.example:443/cb", false));
        assert!(!r.accepts("https://app.example/cb", false));
        let origin = uri("https://app.example");
        assert!(origin.accepts("https://app.example", false));
        assert!(!origin.accepts("https://app.example/", false));
    }

    #[test]
    fn loopback_redirects_may_change_only_the_port() {
        let r = uri("http://127.0.0.1/callback");
        assert!(r.accepts("http://127.0.0.1:49152/callback", true));
        assert!(r.accepts("http://127.0.0.1:1/callback", true));
        assert!(!r.accepts("http://127.0.0.1:49152/callback", false));
        for other in [
            "http://127.0.0.1:49152/other",
            "http://127.0.0.1:49152/./callback",
            "http://127.0.0.1:49152/callback/",
            "http://localhost:49152/callback",
            "HTTP://127.0.0.1:49152/callback",
            "http://127.0.0.1:049152/callback",
            "http://127.0.0.1:0/callback",
            "http://127.0.0.1:65536/callback",
            "http://127.0.0.1:/callback",
            "http://127.0.0.1:+80/callback",
            "http://127.0.0.1:49152:80/callback",
            "http://user@127.0.0.1:49152/callback",
            "http://127.0.0.1.evil:49152/callback",
            "https://127.0.0.1:49152/callback",
        ] {
            assert!(!r.accepts(other, true), "{other}");
        }
        let with_port = uri("http://127.0.0.1:8080/callback");
        assert!(with_port.accepts("http://127.0.0.1/callback", true));
        assert!(with_port.accepts("http://127.0.0.1:9/callback", true));
        let v6 = uri("http://[::1]/callback");
        assert!(v6.accepts("http://[::1]:5000/callback", true));
        assert!(!v6.accepts("http://[::1]5000/callback", true));
        assert!(!v6.accepts("http://[0:0:0:0:0:0:0:1]:5000/callback", true));
    }

    #[test]
    fn only_loopback_ip_literals_over_http_vary_their_port() {
        assert!(!uri("http://localhost/cb").accepts("http://localhost:5000/cb", true));
        assert!(!uri("https://127.0.0.1/cb").accepts("https://127.0.0.1:5000/cb", true));
        assert!(!uri("http://10.0.0.1/cb").accepts("http://10.0.0.1:5000/cb", true));
    }

    #[test]
    fn whitespace_is_refused_at_registration() {
        assert!(RedirectUri::parse("https://app.example/cb ").is_err());
        assert!(RedirectUri::parse("https://app.example/c\tb").is_err());
        assert!(RedirectUri::parse("/cb").is_err());
    }
}
