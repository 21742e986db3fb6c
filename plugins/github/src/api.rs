//! GitHub's REST API over the shared bounded client ([`UpstreamHttp`]: timeouts, no
//! redirects, body cap): GitHub's statuses in GitHub's terms, and Link-header
//! pagination that never leaves the API's origin and stops at a page bound.

use serde::de::DeserializeOwned;
use switchboard_upstream::{HttpError, UpstreamHttp};
use url::Url;

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

impl From<HttpError> for ApiError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Transport(_) | HttpError::Unavailable(_) => {
                ApiError::Unavailable(e.to_string())
            }
            other => ApiError::Protocol(other.to_string()),
        }
    }
}

/// GET one API page; returns the parsed body and the next page's URL.
pub async fn get<T: DeserializeOwned>(
    http: &UpstreamHttp,
    url: &Url,
    token: &str,
    what: &str,
) -> Result<(T, Option<String>), ApiError> {
    let request = http
        .get(url)
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28")
        .bearer_auth(token);
    let response = http.send(request).await?;
    let headers = &response.headers;
    match response.status.as_u16() {
        200 => {}
        401 => return Err(ApiError::Unauthorized),
        403 if headers
            .get("x-ratelimit-remaining")
            .is_some_and(|v| v.as_bytes() == b"0") =>
        {
            return Err(ApiError::Unavailable("rate limited".into()));
        }
        429 => return Err(ApiError::Unavailable("rate limited".into())),
        s @ (403 | 404) => return Err(ApiError::Forbidden(what.into(), s)),
        s if s >= 500 => return Err(ApiError::Unavailable(format!("HTTP {s}"))),
        s => return Err(ApiError::Protocol(format!("{what}: HTTP {s}"))),
    }
    // The serde message names a position, never the body's text.
    let value = serde_json::from_slice(&response.body)
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
    http: &UpstreamHttp,
    api: &Url,
    first: &Url,
    token: &str,
    what: &str,
) -> Result<Vec<T>, ApiError> {
    let mut items = Vec::new();
    let mut url = first.clone();
    for _ in 0..MAX_PAGES {
        let (page, next): (Vec<T>, _) = get(http, &url, token, what).await?;
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

    #[test]
    fn transport_failures_are_unavailability_and_oversized_answers_protocol_errors() {
        assert!(matches!(
            ApiError::from(HttpError::Transport("timed out".into())),
            ApiError::Unavailable(_)
        ));
        assert!(matches!(
            ApiError::from(HttpError::TooLarge(1 << 20)),
            ApiError::Protocol(_)
        ));
    }
}
