//! Upstream error codes, sanitised. An upstream's `error` parameter or member is
//! attacker-reachable text (anyone can send a browser to our callback with
//! `?error=<script>…`), so only something shaped like an OAuth error code goes on.

/// The longest code passed on.
const MAX_CODE: usize = 64;

/// `raw` when it looks like an OAuth error code (1–64 ASCII letters, digits, `_`, `-`
/// or `.`), otherwise `unknown_error`.
pub fn error_code(raw: &str) -> &str {
    let looks_like_a_code = !raw.is_empty()
        && raw.len() <= MAX_CODE
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if looks_like_a_code {
        raw
    } else {
        "unknown_error"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_error_codes_are_passed_on_only_when_safe() {
        assert_eq!(error_code("access_denied"), "access_denied");
        assert_eq!(error_code("invalid_grant"), "invalid_grant");
        assert_eq!(error_code("AADSTS50105.x-y"), "AADSTS50105.x-y");
        assert_eq!(error_code(&"x".repeat(64)), "x".repeat(64));
        assert_eq!(error_code("<script>"), "unknown_error");
        assert_eq!(error_code("access denied"), "unknown_error");
        assert_eq!(error_code("a\nb"), "unknown_error");
        assert_eq!(error_code("jürgen"), "unknown_error");
        assert_eq!(error_code(""), "unknown_error");
        assert_eq!(error_code(&"x".repeat(65)), "unknown_error");
    }
}
