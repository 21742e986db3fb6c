//! Request bodies: JSON only, unknown fields refused, and an error that names the
//! field it is about.

use super::problem::Problem;
use actix_web::HttpRequest;
use actix_web::http::header;
use serde::de::DeserializeOwned;

/// Parses a JSON request body into `T` (whose fields are `deny_unknown_fields`).
pub fn parse<T: DeserializeOwned>(req: &HttpRequest, body: &[u8]) -> Result<T, Problem> {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Problem::new(
            actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body as application/json",
        ));
    }
    let mut input = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut input).map_err(|e| {
        let field = e.path().to_string();
        let detail = e.inner().to_string();
        match field.as_str() {
            "." | "" => Problem::bad_request(detail),
            _ => Problem {
                field: Some(field),
                ..Problem::bad_request(detail)
            },
        }
    })
}

/// For `Option<Option<T>>` fields: absent stays `None` (unchanged), `null` becomes
/// `Some(None)` (cleared).
pub fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

use serde::Deserialize as _;

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read through Debug only
    struct Sample {
        name: String,
        #[serde(default, deserialize_with = "present")]
        nick: Option<Option<String>>,
    }

    fn json() -> HttpRequest {
        TestRequest::default()
            .insert_header(("content-type", "application/json; charset=utf-8"))
            .to_http_request()
    }

    #[test]
    fn a_wrong_type_names_its_field_and_unknown_fields_are_refused() {
        let e = parse::<Sample>(&json(), br#"{"name": 3}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("name"));
        assert_eq!(e.status, 400);
        let e = parse::<Sample>(&json(), br#"{"name": "a", "admin": true}"#).unwrap_err();
        assert!(e.detail.unwrap().contains("unknown field `admin`"));
        let e = parse::<Sample>(&json(), b"{").unwrap_err();
        assert_eq!(e.status, 400);
    }

    #[test]
    fn absent_null_and_a_value_are_three_things() {
        let s: Sample = parse(&json(), br#"{"name": "a"}"#).unwrap();
        assert_eq!(s.nick, None);
        let s: Sample = parse(&json(), br#"{"name": "a", "nick": null}"#).unwrap();
        assert_eq!(s.nick, Some(None));
        let s: Sample = parse(&json(), br#"{"name": "a", "nick": "b"}"#).unwrap();
        assert_eq!(s.nick, Some(Some("b".into())));
    }

    #[test]
    fn only_json_is_read() {
        let req = TestRequest::default()
            .insert_header(("content-type", "text/plain"))
            .to_http_request();
        assert_eq!(
            parse::<Sample>(&req, br#"{"name": "a"}"#)
                .unwrap_err()
                .status,
            415
        );
    }
}
