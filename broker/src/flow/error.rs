//! RFC 6749 / 6750 errors and the one place that turns them into HTTP responses.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde::Serialize;
use url::Url;

/// An OAuth error code with a description safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OAuthError {
    pub error: &'static str,
    pub error_description: String,
    /// Seconds to wait before trying again (`Retry-After`, with `slow_down`).
    #[serde(skip)]
    pub retry_after: Option<i64>,
}

impl OAuthError {
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            error,
            error_description: description.into(),
            retry_after: None,
        }
    }

    /// The same error, telling the client how long to wait.
    pub fn retry_after(self, seconds: i64) -> Self {
        OAuthError {
            retry_after: Some(seconds.max(1)),
            ..self
        }
    }

    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new("invalid_request", d)
    }

    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new("invalid_grant", d)
    }

    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new("invalid_client", d)
    }

    pub fn server_error() -> Self {
        Self::new("server_error", "internal error; see the broker log")
    }

    /// JSON body for the token, revocation and introspection endpoints.
    pub fn token_response(&self) -> HttpResponse {
        let status = match self.error {
            "invalid_client" => StatusCode::UNAUTHORIZED,
            "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
            "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            // A throttle that says how long to wait; a device polling too fast gets
            // the plain 400 of RFC 8628 §3.5.
            "slow_down" if self.retry_after.is_some() => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut res = HttpResponse::build(status);
        res.insert_header(("Cache-Control", "no-store"))
            .insert_header(("Pragma", "no-cache"));
        if status == StatusCode::UNAUTHORIZED {
            res.insert_header(("WWW-Authenticate", "Basic realm=\"switchboard\""));
        }
        if let Some(seconds) = self.retry_after {
            res.insert_header(("Retry-After", seconds));
        }
        res.json(self)
    }

    /// RFC 6750 answer for a protected resource (userinfo).
    pub fn bearer_response(&self) -> HttpResponse {
        let status = match self.error {
            "invalid_request" => StatusCode::BAD_REQUEST,
            "insufficient_scope" => StatusCode::FORBIDDEN,
            "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNAUTHORIZED,
        };
        let challenge = format!(
            "Bearer realm=\"switchboard\", error=\"{}\", error_description=\"{}\"",
            self.error,
            self.error_description.replace(['"', '\\'], "'")
        );
        HttpResponse::build(status)
            .insert_header(("WWW-Authenticate", challenge))
            .insert_header(("Cache-Control", "no-store"))
            .json(self)
    }
}

/// Where an authorization response goes: only ever a registered redirect URI.
#[derive(Debug, Clone)]
pub struct AuthorizationReply {
    pub redirect_uri: Url,
    pub state: Option<String>,
    pub issuer: String,
}

impl AuthorizationReply {
    fn redirect(&self, params: &[(&str, &str)]) -> HttpResponse {
        let mut url = self.redirect_uri.clone();
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in params {
                q.append_pair(k, v);
            }
            if let Some(s) = &self.state {
                q.append_pair("state", s);
            }
            // RFC 9207: every authorization response names its issuer.
            q.append_pair("iss", &self.issuer);
        }
        HttpResponse::SeeOther()
            .insert_header(("Location", url.as_str()))
            .insert_header(("Cache-Control", "no-store"))
            .finish()
    }

    /// The URL that tells the client about `e` (for a link on an error page).
    pub fn error_url(&self, e: &OAuthError) -> Url {
        let mut url = self.redirect_uri.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("error", e.error);
            q.append_pair("error_description", &e.error_description);
            if let Some(s) = &self.state {
                q.append_pair("state", s);
            }
            q.append_pair("iss", &self.issuer);
        }
        url
    }

    pub fn code(&self, code: &str) -> HttpResponse {
        self.redirect(&[("code", code)])
    }

    pub fn error(&self, e: &OAuthError) -> HttpResponse {
        self.redirect(&[
            ("error", e.error),
            ("error_description", &e.error_description),
        ])
    }
}
