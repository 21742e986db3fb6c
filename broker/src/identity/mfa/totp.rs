//! Time-based one-time passwords (RFC 6238) as authenticator apps make them: HMAC-SHA-1
//! over the 30-second time step (RFC 4226's HOTP with the step as the counter), six
//! digits. The secret is 20 random bytes, shown to the person in base32.

use crate::store::UnixTime;
use aws_lc_rs::hmac;

/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Seconds of one time step.
pub const STEP_SECS: i64 = 30;
/// Steps either side of now whose code is accepted (clocks drift, people type slowly).
pub const SKEW_STEPS: i64 = 1;
/// Bytes of a shared secret (160 bits, RFC 4226's recommendation).
pub const SECRET_LEN: usize = 20;

/// The time step `now` falls in.
pub fn step_at(now: UnixTime) -> i64 {
    now.div_euclid(STEP_SECS)
}

/// RFC 4226 HOTP: the `digits`-digit code of `counter`, zero-padded.
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    // Dynamic truncation (RFC 4226 §5.3): the low nibble of the last byte is an offset.
    let offset = usize::from(mac.last().copied().unwrap_or(0) & 0x0f);
    let word = match mac.get(offset..offset + 4) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a & 0x7f, b, c, d]),
        _ => 0,
    };
    let modulus = 10u64.pow(digits);
    let value = u64::from(word) % modulus;
    format!("{value:0width$}", width = digits as usize)
}

/// The code of time step `step`.
pub fn code_at_step(secret: &[u8], step: i64) -> String {
    hotp(secret, u64::try_from(step).unwrap_or(0), DIGITS)
}

/// The time step within [`SKEW_STEPS`] of `now` whose code is `typed`, compared in
/// constant time; `None` if none matches or `typed` is not six digits.
pub fn matching_step(secret: &[u8], typed: &str, now: UnixTime) -> Option<i64> {
    if typed.len() != DIGITS as usize || !typed.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let here = step_at(now);
    let mut found = None;
    // Every candidate is computed and compared, so timing says nothing of which matched.
    for step in (here - SKEW_STEPS)..=(here + SKEW_STEPS) {
        if step < 0 {
            continue;
        }
        let code = code_at_step(secret, step);
        if crate::secrets::constant_time_eq(code.as_bytes(), typed.as_bytes()) && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// The base32 text (RFC 4648, no padding) people type into an authenticator app.
pub fn secret_text(secret: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(secret)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `otpauth://` URI (Google Authenticator's key URI format) an app scans.
pub fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> String {
    let issuer_enc = encode_component(issuer);
    format!(
        "otpauth://totp/{issuer_enc}:{}?secret={}&issuer={issuer_enc}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        encode_component(account),
        secret_text(secret),
    )
}

/// `text` as a QR code in SVG markup (an `<svg>` element, no XML prologue) to put
/// inline in a page.
pub fn qr_svg(text: &str) -> Result<String, qrcode::types::QrError> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .build();
    Ok(match svg.find("<svg") {
        Some(at) => svg[at..].to_string(),
        None => svg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B's SHA-1 seed.
    const RFC_SEED: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc_4226_hotp_test_values() {
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (counter, code) in expected.iter().enumerate() {
            assert_eq!(
                hotp(RFC_SEED, counter as u64, 6),
                *code,
                "counter {counter}"
            );
        }
    }

    #[test]
    fn rfc_6238_sha1_test_vectors() {
        let vectors: [(i64, &str); 6] = [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        for (time, code) in vectors {
            let step = u64::try_from(step_at(time)).unwrap();
            assert_eq!(hotp(RFC_SEED, step, 8), code, "T = {time}");
            // The six-digit code apps show is the last six digits of the same value.
            assert_eq!(
                code_at_step(RFC_SEED, step_at(time)),
                code[2..],
                "T = {time}"
            );
        }
    }

    #[test]
    fn a_code_matches_one_step_either_side_and_no_further() {
        let now = 1_111_111_111;
        let here = step_at(now);
        for offset in -1..=1 {
            let code = code_at_step(RFC_SEED, here + offset);
            assert_eq!(matching_step(RFC_SEED, &code, now), Some(here + offset));
        }
        for offset in [-3, -2, 2, 3] {
            let code = code_at_step(RFC_SEED, here + offset);
            assert_eq!(matching_step(RFC_SEED, &code, now), None, "offset {offset}");
        }
    }

    #[test]
    fn malformed_codes_never_match() {
        let now = 59;
        let good = code_at_step(RFC_SEED, step_at(now));
        assert_eq!(matching_step(RFC_SEED, &good, now), Some(1));
        for bad in [
            "",
            "12345",
            "1234567",
            "abcdef",
            " 28708",
            &format!("{good} "),
        ] {
            assert_eq!(matching_step(RFC_SEED, bad, now), None, "{bad:?}");
        }
        assert_eq!(matching_step(b"another secret......", &good, now), None);
    }

    #[test]
    fn the_key_uri_carries_the_base32_secret_and_encoded_labels() {
        let uri = otpauth_uri(RFC_SEED, "Switchboard Dev", "ada@example.com");
        assert_eq!(
            uri,
            "otpauth://totp/Switchboard%20Dev:ada%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Switchboard%20Dev&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn the_qr_code_is_bare_svg_markup() {
        let svg = qr_svg("otpauth://totp/x:y?secret=ABC").unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..20]);
        assert!(svg.contains("<path") || svg.contains("<rect"));
        assert!(!svg.contains("<script"));
    }
}
