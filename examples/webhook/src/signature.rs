//! `X-Hub-Signature-256` verification: HMAC-SHA256 of the app secret over the raw body bytes.
//!
//! Meta signs the bytes it sends (non-ASCII escaped as `\uXXXX`), so verification runs over the
//! body exactly as received, never over re-serialized JSON. The comparison is constant-time
//! (`hmac`'s `verify_slice`, built on `subtle`) so a caller cannot learn the expected digest
//! byte by byte from response times. Hex is accepted in either case.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header Meta signs deliveries with.
pub const HEADER: &str = "x-hub-signature-256";

/// Why a delivery's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-Hub-Signature-256` header: answer 401.
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    /// The header is not `sha256=<64 hex digits>`: answer 401.
    #[error("malformed X-Hub-Signature-256 header: {0}")]
    Malformed(&'static str),
    /// Well-formed, but not the HMAC of this body under our secret: answer 403.
    #[error("signature does not match the body")]
    Mismatch,
}

impl SignatureError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::Missing | Self::Malformed(_) => http::StatusCode::UNAUTHORIZED,
            Self::Mismatch => http::StatusCode::FORBIDDEN,
        }
    }
}

/// Parses a header value `sha256=<hex>` into the 32-byte digest. Surrounding whitespace is
/// ignored; the algorithm prefix is case-insensitive, and so are the hex digits.
pub fn parse_header(value: &[u8]) -> Result<[u8; 32], SignatureError> {
    let value = std::str::from_utf8(value)
        .map_err(|_| SignatureError::Malformed("not ASCII"))?
        .trim();
    let (algo, hex_digits) = value
        .split_once('=')
        .ok_or(SignatureError::Malformed("expected sha256=<hex>"))?;
    if !algo.eq_ignore_ascii_case("sha256") {
        return Err(SignatureError::Malformed("algorithm must be sha256"));
    }
    if hex_digits.len() != 64 {
        return Err(SignatureError::Malformed("digest must be 64 hex digits"));
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut out)
        .map_err(|_| SignatureError::Malformed("digest is not hex"))?;
    Ok(out)
}

/// The verifier for one app secret. Cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    key: HmacSha256,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(***)")
    }
}

impl Verifier {
    /// A verifier for `app_secret`.
    pub fn new(app_secret: &[u8]) -> Self {
        Self {
            key: HmacSha256::new_from_slice(app_secret).expect("HMAC accepts keys of any length"),
        }
    }

    /// Checks `header` (the raw header value, `None` when absent) against `body`.
    pub fn verify(&self, header: Option<&[u8]>, body: &[u8]) -> Result<(), SignatureError> {
        let expected = parse_header(header.ok_or(SignatureError::Missing)?)?;
        self.verify_digest(&expected, body)
    }

    /// Checks an already parsed digest (see [`parse_header`]) against `body`.
    pub fn verify_digest(&self, digest: &[u8; 32], body: &[u8]) -> Result<(), SignatureError> {
        let mut mac = self.key.clone();
        mac.update(body);
        mac.verify_slice(digest)
            .map_err(|_| SignatureError::Mismatch)
    }

    /// The header value Meta would send for `body`: `sha256=<lowercase hex>`.
    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.key.clone();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference delivery from pywa's test suite, signed by Meta-compatible code with the
    /// secret below (see shared/fixtures/whatsapp/SOURCES.md): an independent check that we
    /// compute the same digest over the same bytes.
    const PYWA_BODY: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"264937493375603","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550953877","phone_number_id":"277321005464405"},"contacts":[{"profile":{"name":"PyWa Tests"},"wa_id":"972544401243"}],"messages":[{"from":"972544401243","id":"wamid.HBgMOTcyNTQ0NDAxMjQzFQIAEhggM0RFQTNCMEEwRTY3QzUwODYzMDc4NjQ4QzM4ODAxM0YA","timestamp":"1730231903","text":{"body":"Hey there! I am using PyWa."},"type":"text"}]},"field":"messages"}]}]}"#;
    const PYWA_SECRET: &str = "1222e786b144d0e85b9f365372d93676";
    const PYWA_SIG: &str =
        "sha256=54edfa1d7259e0eb13c677cc7d73d1b5c86cfa12433d19156e058ab9251bc441";

    #[test]
    fn independent_reference_signature_verifies() {
        let v = Verifier::new(PYWA_SECRET.as_bytes());
        assert_eq!(PYWA_BODY.len(), 511);
        assert_eq!(
            v.verify(Some(PYWA_SIG.as_bytes()), PYWA_BODY.as_bytes()),
            Ok(())
        );
        assert_eq!(v.sign(PYWA_BODY.as_bytes()), PYWA_SIG);
        // upper-case hex is the same digest
        let upper = format!("sha256={}", PYWA_SIG[7..].to_ascii_uppercase());
        assert_eq!(
            v.verify(Some(upper.as_bytes()), PYWA_BODY.as_bytes()),
            Ok(())
        );
    }

    #[test]
    fn missing_malformed_and_mismatch_are_told_apart() {
        let v = Verifier::new(b"secret");
        let body = b"{}";
        assert_eq!(v.verify(None, body), Err(SignatureError::Missing));
        for bad in [
            &b""[..],
            b"sha256",
            b"sha1=abcd",
            b"sha256=xyz",
            b"sha256=00",
            &[0xff, 0xfe][..],
        ] {
            let err = v.verify(Some(bad), body).unwrap_err();
            assert!(matches!(err, SignatureError::Malformed(_)), "{bad:?}");
            assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED);
        }
        let wrong = Verifier::new(b"other").sign(body);
        let err = v.verify(Some(wrong.as_bytes()), body).unwrap_err();
        assert_eq!(err, SignatureError::Mismatch);
        assert_eq!(err.status(), http::StatusCode::FORBIDDEN);
    }

    #[test]
    fn escaped_and_raw_utf8_are_different_bytes_with_different_signatures() {
        let v = Verifier::new(b"secret");
        let escaped = br#"{"text":"caf\u00e9"}"#;
        let raw = "{\"text\":\"café\"}".as_bytes();
        let sig_escaped = v.sign(escaped);
        assert!(v.verify(Some(sig_escaped.as_bytes()), escaped).is_ok());
        assert_eq!(
            v.verify(Some(sig_escaped.as_bytes()), raw),
            Err(SignatureError::Mismatch)
        );
        let sig_raw = v.sign(raw);
        assert!(v.verify(Some(sig_raw.as_bytes()), raw).is_ok());
    }

    proptest! {
        #[test]
        fn sign_then_verify_roundtrips(secret in proptest::collection::vec(any::<u8>(), 0..64),
                                       body in proptest::collection::vec(any::<u8>(), 0..512),
                                       upper in any::<bool>()) {
            let v = Verifier::new(&secret);
            let mut sig = v.sign(&body);
            if upper { sig = sig.to_ascii_uppercase(); }
            prop_assert_eq!(v.verify(Some(sig.as_bytes()), &body), Ok(()));
        }

        #[test]
        fn any_flipped_body_byte_is_a_mismatch(body in proptest::collection::vec(any::<u8>(), 1..256),
                                               idx in any::<prop::sample::Index>(),
                                               flip in 1u8..=255) {
            let v = Verifier::new(b"k");
            let sig = v.sign(&body);
            let mut tampered = body.clone();
            let i = idx.index(tampered.len());
            tampered[i] ^= flip;
            prop_assert_eq!(v.verify(Some(sig.as_bytes()), &tampered), Err(SignatureError::Mismatch));
        }

        #[test]
        fn header_parser_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = parse_header(&raw);
        }

        #[test]
        fn header_parser_accepts_exactly_64_hex(digits in "[0-9a-fA-F]{0,80}") {
            let header = format!("sha256={digits}");
            prop_assert_eq!(parse_header(header.as_bytes()).is_ok(), digits.len() == 64);
        }
    }
}
