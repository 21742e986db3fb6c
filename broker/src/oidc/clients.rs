//! Client rules: redirect-URI matching and client authentication at the token endpoint.

use crate::config::{Client, ClientAuth, Config, RedirectUri};
use crate::flow::OAuthError;
use crate::secrets::constant_time_eq;
use actix_web::HttpRequest;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// `requested`, exactly as sent, when it is one of the client's registered redirect
/// URIs: the same string, with no normalisation, except that a public (native)
/// client's loopback IP redirect may name any port (RFC 8252 §7.3). `/token` then
/// compares the string returned here, byte for byte.
pub fn match_redirect_uri(client: &Client, requested: &str) -> Option<RedirectUri> {
    client
        .redirect_uris
        .iter()
        .any(|registered| registered.accepts(requested, client.is_public()))
        .then(|| RedirectUri::parse(requested).ok())
        .flatten()
}

/// Credentials a client presented at the token endpoint.
#[derive(Debug, PartialEq, Eq)]
pub struct PresentedCredentials {
    pub client_id: String,
    pub secret: Option<String>,
    pub via_basic: bool,
}

/// Reads `client_secret_basic` (RFC 6749 §2.3.1: form-decoded after base64) or
/// `client_secret_post` / `none` from the form. Using both is an error.
pub fn presented_credentials(
    req: &HttpRequest,
    form_client_id: Option<&str>,
    form_secret: Option<&str>,
) -> Result<PresentedCredentials, OAuthError> {
    let basic = match req.headers().get("authorization") {
        None => None,
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| OAuthError::invalid_client("malformed Authorization header"))?;
            let Some((scheme, rest)) = v.split_once(' ') else {
                return Err(OAuthError::invalid_client("malformed Authorization header"));
            };
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(OAuthError::invalid_client(
                    "unsupported authentication scheme",
                ));
            }
            let decoded = STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
            let decode = |s: &str| -> Result<String, OAuthError> {
                let plus_as_space = s.replace('+', " ");
                percent_decode(&plus_as_space)
                    .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))
            };
            Some((decode(id)?, decode(secret)?))
        }
    };
    match (basic, form_client_id, form_secret) {
        (Some((id, secret)), form_id, None) => {
            if form_id.is_some_and(|f| f != id) {
                return Err(OAuthError::invalid_request(
                    "client_id differs from the Authorization header",
                ));
            }
            Ok(PresentedCredentials {
                client_id: id,
                secret: Some(secret),
                via_basic: true,
            })
        }
        (Some(_), _, Some(_)) => Err(OAuthError::invalid_request(
            "use one client authentication method",
        )),
        (None, Some(id), secret) => Ok(PresentedCredentials {
            client_id: id.to_string(),
            secret: secret.map(str::to_string),
            via_basic: false,
        }),
        (None, None, _) => Err(OAuthError::invalid_client("client authentication required")),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The client the credentials prove, or `invalid_client`.
pub fn authenticate<'a>(
    config: &'a Config,
    creds: &PresentedCredentials,
) -> Result<&'a Client, OAuthError> {
    let refuse = || OAuthError::invalid_client("client authentication failed");
    let client = config.clients.get(&creds.client_id).ok_or_else(refuse)?;
    match (&client.auth, &creds.secret) {
        (ClientAuth::None, None) => Ok(client),
        (ClientAuth::None, Some(_)) => Err(refuse()),
        (ClientAuth::Secret(expected), Some(given)) => {
            if constant_time_eq(expected.expose().as_bytes(), given.as_bytes()) {
                Ok(client)
            } else {
                Err(refuse())
            }
        }
        (ClientAuth::Secret(_), None) => Err(refuse()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;
    use std::collections::BTreeSet;

    fn client(public: bool, uris: &[&str]) -> Client {
        Client {
            id: "c".into(),
            name: "c".into(),
            auth: if public {
                ClientAuth::None
            } else {
                ClientAuth::Secret(crate::secrets::SecretString::new("s3cret-long".into()))
            },
            redirect_uris: uris
                .iter()
                .map(|u| RedirectUri::parse(u).unwrap())
                .collect(),
            require_pkce: true,
            require_mfa: false,
            scopes: BTreeSet::new(),
            grants: BTreeSet::new(),
            cors_origins: BTreeSet::new(),
            id_token_alg: crate::config::SigningAlg::Rs256,
            audience: None,
            resources: BTreeSet::new(),
            lifetimes: crate::config::Lifetimes {
                access_token: 1,
                id_token: 1,
                refresh_token_idle: 1,
                refresh_token_absolute: 1,
            },
            post_logout_redirect_uris: vec![],
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            introspection: crate::config::IntrospectionPolicy::OwnAudience,
            exchange_audiences: BTreeSet::new(),
        }
    }

    #[test]
    fn redirect_uris_match_exactly() {
        let c = client(false, &["https://app.example/cb"]);
        assert!(match_redirect_uri(&c, "https://app.example/cb").is_some());
        assert!(match_redirect_uri(&c, "https://app.example/cb/").is_none());
        assert!(match_redirect_uri(&c, "https://app.example/cb?x=1").is_none());
        assert!(match_redirect_uri(&c, "https://app.example.evil/cb").is_none());
        // No normalisation: another spelling of the same address is another URI.
        assert!(match_redirect_uri(&c, "HTTPS://app.example/cb").is_none());
        assert!(match_redirect_uri(&c, "https://app.example:443/cb").is_none());
        assert!(match_redirect_uri(&c, "https://app.example/./cb").is_none());
    }

    #[test]
    fn the_matched_uri_is_the_string_requested() {
        let c = client(true, &["http://127.0.0.1/callback"]);
        let matched = match_redirect_uri(&c, "http://127.0.0.1:49152/callback").unwrap();
        assert_eq!(matched.as_str(), "http://127.0.0.1:49152/callback");
        let c = client(false, &["https://app.example:443/cb"]);
        let matched = match_redirect_uri(&c, "https://app.example:443/cb").unwrap();
        assert_eq!(matched.as_str(), "https://app.example:443/cb");
    }

    #[test]
    fn public_loopback_redirects_may_change_port_only() {
        let c = client(true, &["http://127.0.0.1/callback"]);
        assert!(match_redirect_uri(&c, "http://127.0.0.1:49152/callback").is_some());
        assert!(match_redirect_uri(&c, "http://127.0.0.1:49152/other").is_none());
        assert!(match_redirect_uri(&c, "http://localhost:49152/callback").is_none());
        let confidential = client(false, &["http://127.0.0.1/callback"]);
        assert!(match_redirect_uri(&confidential, "http://127.0.0.1:49152/callback").is_none());
    }

    #[test]
    fn basic_credentials_are_form_decoded_after_base64() {
        let raw = STANDARD.encode("my%20client:p%40ss+word");
        let req = TestRequest::default()
            .insert_header(("Authorization", format!("Basic {raw}")))
            .to_http_request();
        let creds = presented_credentials(&req, None, None).unwrap();
        assert_eq!(creds.client_id, "my client");
        assert_eq!(creds.secret.as_deref(), Some("p@ss word"));
        assert!(creds.via_basic);
    }

    #[test]
    fn two_authentication_methods_are_refused() {
        let raw = STANDARD.encode("c:s");
        let req = TestRequest::default()
            .insert_header(("Authorization", format!("Basic {raw}")))
            .to_http_request();
        assert!(presented_credentials(&req, Some("c"), Some("s")).is_err());
    }
}
