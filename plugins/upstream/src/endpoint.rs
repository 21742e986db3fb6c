//! The rule for an upstream URL an operator configures (an issuer, a GitHub
//! Enterprise base URL): `https`, or `http` only on a loopback host (tests, a local
//! proxy) or in development mode; a host; no query, fragment or credentials.

use std::net::IpAddr;
use url::Url;

/// True for `localhost` and loopback addresses.
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Parses and checks the upstream URL `raw` of config key `key`. Errors name the key
/// and the value, for the config message.
pub fn check_upstream_url(key: &str, raw: &str, dev_mode: bool) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("{key} `{raw}` is not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if dev_mode || is_loopback_host(&url) => {}
        _ => return Err(format!("{key} `{raw}` must use https")),
    }
    if url.host().is_none() {
        return Err(format!("{key} `{raw}` has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{key} `{raw}` must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{key} `{raw}` must not hold credentials"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_must_be_https_except_on_loopback() {
        assert!(check_upstream_url("issuer", "https://idp.example.com", false).is_ok());
        assert!(check_upstream_url("issuer", "http://127.0.0.1:8080/x", false).is_ok());
        assert!(check_upstream_url("issuer", "http://localhost:8080", false).is_ok());
        assert!(check_upstream_url("issuer", "http://[::1]:8080", false).is_ok());
        let err = check_upstream_url("issuer", "http://idp.example.com", false).unwrap_err();
        assert!(err.contains("https"), "{err}");
        assert!(check_upstream_url("issuer", "http://idp.example.com", true).is_ok());
        assert!(check_upstream_url("issuer", "https://idp.example.com/?a=b", false).is_err());
        assert!(check_upstream_url("issuer", "https://idp.example.com/#f", false).is_err());
        assert!(check_upstream_url("issuer", "https://u:p@idp.example.com", false).is_err());
        assert!(check_upstream_url("issuer", "https://u@idp.example.com", false).is_err());
        assert!(check_upstream_url("issuer", "file:///etc/passwd", true).is_err());
        assert!(check_upstream_url("issuer", "not a url", false).is_err());
    }

    #[test]
    fn loopback_means_localhost_or_a_loopback_address() {
        for (url, loopback) in [
            ("http://localhost:1", true),
            ("http://LOCALHOST", true),
            ("http://127.0.0.2", true),
            ("http://[::1]", true),
            ("http://localhost.example.com", false),
            ("http://10.0.0.1", false),
        ] {
            assert_eq!(
                is_loopback_host(&Url::parse(url).unwrap()),
                loopback,
                "{url}"
            );
        }
    }
}
