//! Pages of a list: the size a caller may ask for, the opaque cursor to the next page,
//! and cutting one more row than asked into "this page, and is there another".

use super::problem::Problem;
use crate::store::PageCursor;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use utoipa::IntoParams;

const DEFAULT_PAGE_SIZE: u32 = 25;
const MAX_PAGE_SIZE: u32 = 200;

/// The query of a plain paged list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// 1 to 200, default 25.
    pub page_size: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page size as asked: 1 to 200, 25 when not given.
pub fn page_size(asked: Option<u32>) -> Result<u32, Problem> {
    let size = asked.unwrap_or(DEFAULT_PAGE_SIZE);
    match (1..=MAX_PAGE_SIZE).contains(&size) {
        true => Ok(size),
        false => Err(Problem::invalid_field(
            "page_size",
            format!("between 1 and {MAX_PAGE_SIZE}"),
        )),
    }
}

/// The cursor after a row in `(created_at, id)` order, as `next_cursor` shows it.
pub fn encode(created_at: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{created_at}:{id}"))
}

/// The position a `cursor` parameter names.
pub fn decode(text: &str) -> Result<PageCursor, Problem> {
    decoded(text).ok_or_else(|| Problem::invalid_field("cursor", "not a cursor of this API"))
}

fn decoded(text: &str) -> Option<PageCursor> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(text).ok()?).ok()?;
    let (created_at, id) = raw.split_once(':')?;
    Some(PageCursor {
        created_at: created_at.parse().ok()?,
        id: id.to_string(),
    })
}

/// A cursor that is a position in text order (`parts` joined), as `next_cursor` shows
/// it.
pub fn encode_parts(parts: &[&str]) -> String {
    URL_SAFE_NO_PAD.encode(parts.join("\n"))
}

/// The `N` parts a cursor of [`encode_parts`] holds.
pub fn decode_parts<const N: usize>(text: &str) -> Result<[String; N], Problem> {
    let refused = || Problem::invalid_field("cursor", "not a cursor of this API");
    let raw = URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(refused)?;
    let parts: Vec<String> = raw.split('\n').map(str::to_string).collect();
    parts.try_into().map_err(|_| refused())
}

/// `rows` were read with a limit of `size + 1`: the page, and the cursor to the next
/// one if that extra row came.
pub fn split<T>(
    mut rows: Vec<T>,
    size: u32,
    cursor: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let size = size as usize;
    let more = rows.len() > size;
    rows.truncate(size);
    let next = match more {
        true => rows.last().map(cursor),
        false => None,
    };
    (rows, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = decode(&encode(1_700_000_000, "u-1")).unwrap();
        assert_eq!((c.created_at, c.id.as_str()), (1_700_000_000, "u-1"));
        assert_eq!(
            decode("not base64!").unwrap_err().field.as_deref(),
            Some("cursor")
        );
        assert!(decode(&URL_SAFE_NO_PAD.encode("x:y")).is_err());
    }

    #[test]
    fn text_cursors_round_trip_with_their_part_count() {
        let [a, b] = decode_parts::<2>(&encode_parts(&["group", "g/1"])).unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("group", "g/1"));
        assert!(decode_parts::<3>(&encode_parts(&["a", "b"])).is_err());
        assert!(decode_parts::<1>("%%").is_err());
    }

    #[test]
    fn one_extra_row_means_another_page() {
        let (page, next) = split(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!((page, next.as_deref()), (vec![1, 2], Some("2")));
        let (page, next) = split(vec![1, 2], 2, |n| n.to_string());
        assert_eq!((page, next), (vec![1, 2], None));
        assert!(page_size(Some(0)).is_err() && page_size(Some(201)).is_err());
        assert_eq!(page_size(None).unwrap(), 25);
    }
}
