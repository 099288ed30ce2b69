//! The MoMo callback signature: `X-Signature: <hex HMAC-SHA256(callback_secret, raw body)>`.
//!
//! Payments-specific rather than the webhook's `signature::Verifier`: Meta's header is
//! `sha256=<hex>` in `X-Hub-Signature-256`; this provider sends bare hex. The comparison is the
//! same: on the MAC bytes, in constant time (`hmac`'s `verify_slice` uses `subtle`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the signature.
pub const HEADER: &str = "x-signature";

/// Why a signature was refused (every reason answers 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-Signature` header: the caller must sign the body.
    #[error("missing X-Signature")]
    Missing,
    /// Not 64 hex characters.
    #[error("malformed X-Signature")]
    Malformed,
    /// A valid-looking signature of some other body or key.
    #[error("X-Signature does not match the body")]
    Mismatch,
}

impl SignatureError {
    /// A short label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            SignatureError::Missing => "missing",
            SignatureError::Malformed => "malformed",
            SignatureError::Mismatch => "mismatch",
        }
    }
}

/// Signs and verifies callback bodies with one secret.
#[derive(Clone)]
pub struct Signer {
    key: Hmac<Sha256>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(***)")
    }
}

impl Signer {
    /// A signer with `secret`.
    pub fn new(secret: &[u8]) -> Self {
        Signer {
            // HMAC takes keys of any length; this never fails.
            key: Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!()),
        }
    }

    /// The hex signature of `body`.
    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.key.clone();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    /// Checks a header value against `body`.
    pub fn verify(&self, header: Option<&[u8]>, body: &[u8]) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let text = std::str::from_utf8(header).map_err(|_| SignatureError::Malformed)?;
        let text = text.trim();
        if text.len() != 64 {
            return Err(SignatureError::Malformed);
        }
        let digest = hex::decode(text).map_err(|_| SignatureError::Malformed)?;
        let mut mac = self.key.clone();
        mac.update(body);
        mac.verify_slice(&digest)
            .map_err(|_| SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_in_plain_hex() {
        let s = Signer::new(b"secret");
        let sig = s.sign(b"{}");
        assert_eq!(sig.len(), 64);
        assert_eq!(s.verify(Some(sig.as_bytes()), b"{}"), Ok(()));
        assert_eq!(s.verify(Some(sig.to_uppercase().as_bytes()), b"{}"), Ok(()));
        assert_eq!(
            s.verify(Some(sig.as_bytes()), b"{ }"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(s.verify(None, b"{}"), Err(SignatureError::Missing));
        let meta_style = format!("sha256={sig}");
        assert_eq!(
            s.verify(Some(meta_style.as_bytes()), b"{}"),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            Signer::new(b"other").verify(Some(sig.as_bytes()), b"{}"),
            Err(SignatureError::Mismatch)
        );
    }
}
