//! One error format for the whole admin API: RFC 9457 problem details
//! (`application/problem+json`), with the field a validation error is about.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem. `type` is always `about:blank`: the status and `title` say
/// what kind of problem it is, `detail` says what happened this time.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request field a validation error is about (a JSON path such as `email`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// RFC 6750 challenge to send with a 401 or 403.
    #[serde(skip)]
    pub challenge: Option<String>,
    /// Seconds a refused caller should wait (`Retry-After`, with a 429).
    #[serde(skip)]
    pub retry_after: Option<i64>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: Some(detail.into()),
            field: None,
            challenge: None,
            retry_after: None,
        }
    }

    /// A 429: too many attempts; try again after `seconds`.
    pub fn too_many(detail: impl Into<String>, seconds: i64) -> Self {
        Problem {
            retry_after: Some(seconds),
            ..Problem::new(StatusCode::TOO_MANY_REQUESTS, detail)
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, detail)
    }

    /// A 400 about one field of the request.
    pub fn invalid_field(field: &str, detail: impl Into<String>) -> Self {
        Problem {
            field: Some(field.to_string()),
            ..Problem::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
        }
    }

    pub fn not_found(what: &str) -> Self {
        Problem::new(StatusCode::NOT_FOUND, format!("no such {what}"))
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::CONFLICT, detail)
    }

    pub fn internal() -> Self {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the broker failed; the request id in the logs says where",
        )
    }

    /// 401: no token, or one that is not live (RFC 6750 `invalid_token`).
    pub fn unauthorized(detail: &str) -> Self {
        let challenge = match detail {
            "" => "Bearer realm=\"switchboard-admin\"".to_string(),
            _ => format!(
                "Bearer realm=\"switchboard-admin\", error=\"invalid_token\", \
                 error_description=\"{detail}\""
            ),
        };
        Problem {
            challenge: Some(challenge),
            ..Problem::new(
                StatusCode::UNAUTHORIZED,
                if detail.is_empty() {
                    "a bearer access token is required"
                } else {
                    detail
                },
            )
        }
    }

    /// 403: a live token that does not allow the operation (RFC 6750
    /// `insufficient_scope`).
    pub fn forbidden(detail: String) -> Self {
        Problem {
            challenge: Some(format!(
                "Bearer realm=\"switchboard-admin\", error=\"insufficient_scope\", \
                 error_description=\"{detail}\""
            )),
            ..Problem::new(StatusCode::FORBIDDEN, detail)
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response
            .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)))
            .insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(challenge) = &self.challenge
            && let Ok(value) = HeaderValue::from_str(challenge)
        {
            response.insert_header((header::WWW_AUTHENTICATE, value));
        }
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.max(1)));
        }
        response.json(self)
    }
}

/// Any failure inside a handler that is not the caller's fault: logged, answered 500.
pub fn internal<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> Problem {
    move |e| {
        tracing::error!(error = %e, "{what}");
        Problem::internal()
    }
}
