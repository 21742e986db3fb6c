//! Outbound HTTP toward GitHub: a bounded client (timeouts, no redirects, body cap)
//! for the OAuth token endpoint (through `oauth2`) and the REST API, with Link-header
//! pagination that never leaves the API's origin and stops at a page bound.

use oauth2::{AsyncHttpClient, HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use url::Url;

/// Largest response body accepted.
const MAX_BODY: usize = 1024 * 1024;
/// Items per page asked of the API.
pub const PER_PAGE: usize = 100;
/// Pages read at most per list (orgs, teams, emails).
pub const MAX_PAGES: usize = 10;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Unreachable, timed out, 5xx, or rate limited.
    #[error("GitHub unavailable: {0}")]
    Unavailable(String),
    /// 401: the token is no longer valid.
    #[error("GitHub refused the token")]
    Unauthorized,
    /// 403 / 404 on a resource the token may not read.
    #[error("GitHub refused access to {0} (HTTP {1})")]
    Forbidden(String, u16),
    /// More pages than the bound.
    #[error("more than {MAX_PAGES} pages of {0}")]
    TooManyPages(String),
    /// Anything else that breaks the API's shape.
    #[error("GitHub API: {0}")]
    Protocol(String),
}

/// The bounded HTTP client.
#[derive(Debug, Clone)]
pub struct GitHubHttp {
    client: reqwest::Client,
}

impl GitHubHttp {
    /// Builds the client.
    pub fn new() -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(GitHubHttp { client })
    }

    async fn read(
        response: reqwest::Response,
    ) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, Vec<u8>), ApiError> {
        let status = response.status();
        let headers = response.headers().clone();
        if response
            .content_length()
            .is_some_and(|len| len > MAX_BODY as u64)
        {
            return Err(ApiError::Protocol("response too large".into()));
        }
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ApiError::Unavailable(transport(&e)))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(ApiError::Protocol("response too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, headers, body))
    }

    /// One OAuth request (token endpoint). GitHub answers errors with HTTP 200 and an
    /// `error` member; those become 400 so `oauth2` reads them as error responses.
    async fn oauth(&self, request: HttpRequest) -> Result<HttpResponse, ApiError> {
        let request = reqwest::Request::try_from(request)
            .map_err(|e| ApiError::Protocol(format!("bad request: {e}")))?;
        let response = self
            .client
            .execute(request)
            .await
            .map_err(|e| ApiError::Unavailable(transport(&e)))?;
        let (status, headers, body) = Self::read(response).await?;
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(ApiError::Unavailable(format!("HTTP {}", status.as_u16())));
        }
        let mut status = status;
        if status.is_success()
            && serde_json::from_slice::<serde_json::Value>(&body)
                .is_ok_and(|v| v.get("error").is_some_and(|e| e.is_string()))
        {
            status = reqwest::StatusCode::BAD_REQUEST;
        }
        let mut builder = oauth2::http::Response::builder().status(status);
        for (name, value) in &headers {
            builder = builder.header(name, value);
        }
        builder
            .body(body)
            .map_err(|e| ApiError::Protocol(e.to_string()))
    }

    /// GET one API page; returns the parsed body and the next page's URL.
    pub async fn get<T: DeserializeOwned>(
        &self,
        url: &Url,
        token: &str,
        what: &str,
    ) -> Result<(T, Option<String>), ApiError> {
        let response = self
            .client
            .get(url.clone())
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| ApiError::Unavailable(transport(&e)))?;
        let (status, headers, body) = Self::read(response).await?;
        match status.as_u16() {
            200 => {}
            401 => return Err(ApiError::Unauthorized),
            403 if headers
                .get("x-ratelimit-remaining")
                .is_some_and(|v| v.as_bytes() == b"0") =>
            {
                return Err(ApiError::Unavailable("rate limited".into()));
            }
            429 => return Err(ApiError::Unavailable("rate limited".into())),
            403 | 404 => return Err(ApiError::Forbidden(what.into(), status.as_u16())),
            s if s >= 500 => return Err(ApiError::Unavailable(format!("HTTP {s}"))),
            s => return Err(ApiError::Protocol(format!("{what}: HTTP {s}"))),
        }
        let value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::Protocol(format!("{what}: {e}")))?;
        let next = headers
            .get_all("link")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(next_link);
        Ok((value, next))
    }

    /// GET every page of a list (at most [`MAX_PAGES`]), following `rel="next"` links
    /// that stay on `api`'s origin.
    pub async fn get_all<T: DeserializeOwned>(
        &self,
        api: &Url,
        first: &Url,
        token: &str,
        what: &str,
    ) -> Result<Vec<T>, ApiError> {
        let mut items = Vec::new();
        let mut url = first.clone();
        for _ in 0..MAX_PAGES {
            let (page, next): (Vec<T>, _) = self.get(&url, token, what).await?;
            items.extend(page);
            let Some(next) = next else {
                return Ok(items);
            };
            let next = Url::parse(&next)
                .map_err(|e| ApiError::Protocol(format!("{what}: bad next link: {e}")))?;
            if next.origin() != api.origin() {
                return Err(ApiError::Protocol(format!(
                    "{what}: next link leaves the API ({})",
                    next.origin().ascii_serialization()
                )));
            }
            url = next;
        }
        Err(ApiError::TooManyPages(what.into()))
    }
}

fn transport(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "request failed".into()
    }
}

/// The `rel="next"` URL of one Link header value.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p == "rel=\"next\"" || p == "rel=next"
        });
        let target = target.trim();
        (is_next && target.starts_with('<') && target.ends_with('>'))
            .then(|| target[1..target.len() - 1].to_string())
    })
}

impl<'c> AsyncHttpClient<'c> for GitHubHttp {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, ApiError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.oauth(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_give_the_next_page() {
        let h = r#"<https://api.github.com/user/orgs?page=2>; rel="next", <https://api.github.com/user/orgs?page=5>; rel="last""#;
        assert_eq!(
            next_link(h).as_deref(),
            Some("https://api.github.com/user/orgs?page=2")
        );
        let last_page = r#"<https://api.github.com/user/orgs?page=1>; rel="first", <https://api.github.com/user/orgs?page=4>; rel="prev""#;
        assert_eq!(next_link(last_page), None);
        assert_eq!(next_link("garbage"), None);
    }
}
