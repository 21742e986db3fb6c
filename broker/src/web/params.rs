//! [`Params`]: the parameters of a request read one way, whether they came as a GET
//! query or a POST form (`/authorize` and upstream callbacks accept both). A name
//! sent twice is never silently resolved to one of its values: the caller sees it.

use super::pages::PageError;
use actix_web::dev::Payload;
use actix_web::http::{Method, StatusCode};
use actix_web::{FromRequest, HttpRequest, web};
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::future::Future;
use std::pin::Pin;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    values: BTreeMap<String, String>,
    /// Names sent more than once, in the order first repeated.
    repeated: Vec<String>,
}

impl Params {
    /// Parses `application/x-www-form-urlencoded` text.
    pub fn parse(encoded: &[u8]) -> Result<Self, PageError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_bytes(encoded).map_err(|_| PageError::malformed())?;
        let mut params = Params::default();
        for (name, value) in pairs {
            match params.values.entry(name) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(seen) => {
                    if !params.repeated.contains(seen.key()) {
                        params.repeated.push(seen.key().clone());
                    }
                }
            }
        }
        Ok(params)
    }

    /// The value of a parameter sent once; `None` if absent or repeated.
    pub fn get(&self, name: &str) -> Option<&str> {
        if self.is_repeated(name) {
            return None;
        }
        self.values.get(name).map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub fn is_repeated(&self, name: &str) -> bool {
        self.repeated.iter().any(|r| r == name)
    }

    /// The first name sent more than once.
    pub fn first_repeated(&self) -> Option<&str> {
        self.repeated.first().map(String::as_str)
    }

    /// Every parameter, for a caller that refuses repeats first.
    pub fn into_unique(self) -> Result<BTreeMap<String, String>, PageError> {
        match self.repeated.is_empty() {
            true => Ok(self.values),
            false => Err(PageError::bad_request("msg.repeated_parameter")),
        }
    }
}

impl FromRequest for Params {
    type Error = PageError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, PageError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if req.method() != Method::POST {
            let parsed = Params::parse(req.query_string().as_bytes());
            return Box::pin(async move { parsed });
        }
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let body = body
                .await
                .map_err(|_| PageError::sign_in(StatusCode::PAYLOAD_TOO_LARGE, "msg.too_large"))?;
            Params::parse(&body)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn a_repeated_name_has_no_value() {
        let p = Params::parse(b"a=1&b=2&a=3&a=4").unwrap();
        assert_eq!(p.get("b"), Some("2"));
        assert_eq!(p.get("a"), None);
        assert!(p.contains("a"));
        assert_eq!(p.first_repeated(), Some("a"));
        assert!(p.into_unique().is_err());
    }

    #[test]
    fn values_are_percent_decoded() {
        assert_eq!(
            Params::parse(b"state=x%20y").unwrap().get("state"),
            Some("x y")
        );
    }

    #[actix_web::test]
    async fn get_query_and_post_form_read_the_same() {
        let (req, mut payload) = TestRequest::get().uri("/cb?code=c&state=s").to_http_parts();
        let from_get = Params::from_request(&req, &mut payload).await.unwrap();
        let (req, mut payload) = TestRequest::post()
            .uri("/cb?ignored=1")
            .insert_header(("content-type", "application/x-www-form-urlencoded"))
            .set_payload("code=c&state=s")
            .to_http_parts();
        let from_post = Params::from_request(&req, &mut payload).await.unwrap();
        assert_eq!(from_get, from_post);
        assert_eq!(from_post.into_unique().unwrap().len(), 2);
    }
}
