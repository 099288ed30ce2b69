//! Request fingerprinting: the same key with a different request is a client bug (422).

use std::fmt;

use sha2::{Digest, Sha256};

/// A SHA-256 digest identifying a request's content. Two requests with the same key and the
/// same fingerprint are "the same request"; a different fingerprint is a `Mismatch`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Wrap raw digest bytes (e.g. read back from a store).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Fingerprint(bytes)
    }

    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The default fingerprint: SHA-256 over method, path, query and body. Every part is
    /// length-prefixed so that moving bytes between parts (`/a` + `b` vs `/ab` + ``) changes
    /// the digest.
    pub fn of_request(method: &str, path: &str, query: Option<&str>, body: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        for part in [method.as_bytes(), path.as_bytes()] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        match query {
            // "no query" and "empty query" are different requests on the wire.
            None => hasher.update([0u8]),
            Some(q) => {
                hasher.update([1u8]);
                hasher.update((q.len() as u64).to_be_bytes());
                hasher.update(q.as_bytes());
            }
        }
        hasher.update((body.len() as u64).to_be_bytes());
        hasher.update(body);
        Fingerprint(hasher.finalize().into())
    }

    /// A fingerprint over arbitrary bytes (for callers with their own notion of "same request").
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Fingerprint(Sha256::digest(bytes).into())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({}…)", &self.to_hex()[..12])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parts_are_separated() {
        let a = Fingerprint::of_request("POST", "/a", None, b"b");
        let b = Fingerprint::of_request("POST", "/ab", None, b"");
        let c = Fingerprint::of_request("POST", "/a", Some(""), b"b");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, Fingerprint::of_request("POST", "/a", None, b"b"));
    }

    proptest! {
        #[test]
        fn deterministic(m in "[A-Z]{3,7}", p in "/[a-z/]{0,20}", q in proptest::option::of("[a-z=&]{0,20}"), body in proptest::collection::vec(any::<u8>(), 0..256)) {
            prop_assert_eq!(
                Fingerprint::of_request(&m, &p, q.as_deref(), &body),
                Fingerprint::of_request(&m, &p, q.as_deref(), &body)
            );
        }

        #[test]
        fn any_body_change_changes_it(body in proptest::collection::vec(any::<u8>(), 1..256), idx in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let mut other = body.clone();
            let i = idx.index(other.len());
            other[i] ^= flip;
            prop_assert_ne!(
                Fingerprint::of_request("POST", "/x", None, &body),
                Fingerprint::of_request("POST", "/x", None, &other)
            );
        }

        #[test]
        fn moving_bytes_between_path_and_body_changes_it(path in "/[a-z]{1,10}", body in "[a-z]{1,10}") {
            let moved = format!("{path}{}", &body[..1]);
            prop_assert_ne!(
                Fingerprint::of_request("POST", &path, None, body.as_bytes()),
                Fingerprint::of_request("POST", &moved, None, &body.as_bytes()[1..])
            );
        }
    }
}
