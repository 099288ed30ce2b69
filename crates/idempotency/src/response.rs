//! The stored response and its compact binary encoding (shared by every store).

use bytes::Bytes;

use crate::error::Error;

/// Headers never stored: hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection,
/// `Set-Cookie` could hand one client's session to another, and `Date` must be fresh.
const NOT_REPLAYED: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "set-cookie",
    "date",
];

/// Whether a header may be stored and replayed.
pub fn is_replay_safe_header(name: &str) -> bool {
    !NOT_REPLAYED.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// A completed response as stored: status, replay-safe headers (in order, names lower-cased),
/// body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    status: u16,
    headers: Vec<(String, Bytes)>,
    body: Bytes,
}

const FORMAT_VERSION: u8 = 1;

impl StoredResponse {
    /// A response; headers that are not replay-safe are dropped here.
    pub fn new<N, V>(status: u16, headers: impl IntoIterator<Item = (N, V)>, body: Bytes) -> Self
    where
        N: AsRef<str>,
        V: Into<Bytes>,
    {
        let headers = headers
            .into_iter()
            .filter(|(n, _)| is_replay_safe_header(n.as_ref()))
            .map(|(n, v)| (n.as_ref().to_ascii_lowercase(), v.into()))
            .collect();
        StoredResponse {
            status,
            headers,
            body,
        }
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The stored headers.
    pub fn headers(&self) -> &[(String, Bytes)] {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Encode for a store: version byte, status, header count, length-prefixed names and
    /// values, then the body.
    pub fn encode(&self) -> Vec<u8> {
        let size = 7
            + self
                .headers
                .iter()
                .map(|(n, v)| 8 + n.len() + v.len())
                .sum::<usize>()
            + self.body.len();
        let mut out = Vec::with_capacity(size);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.status.to_be_bytes());
        out.extend_from_slice(&(self.headers.len() as u32).to_be_bytes());
        for (name, value) in &self.headers {
            out.extend_from_slice(&(name.len() as u32).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(value.len() as u32).to_be_bytes());
            out.extend_from_slice(value);
        }
        out.extend_from_slice(&self.body);
        out
    }

    /// Decode what [`StoredResponse::encode`] wrote; anything else is [`Error::Corrupt`].
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader(bytes);
        let version = r.take(1)?[0];
        if version != FORMAT_VERSION {
            return Err(Error::Corrupt(format!("unknown format version {version}")));
        }
        let status = u16::from_be_bytes(r.take(2)?.try_into().expect("2 bytes"));
        let count = r.u32()?;
        let mut headers = Vec::with_capacity(count.min(64) as usize);
        for _ in 0..count {
            let n = r.u32()? as usize;
            let name = std::str::from_utf8(r.take(n)?)
                .map_err(|_| Error::Corrupt("header name is not UTF-8".into()))?
                .to_owned();
            let v = r.u32()? as usize;
            let value = Bytes::copy_from_slice(r.take(v)?);
            headers.push((name, value));
        }
        Ok(StoredResponse {
            status,
            headers,
            body: Bytes::copy_from_slice(r.0),
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.0.len() < n {
            return Err(Error::Corrupt("stored response is truncated".into()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unsafe_headers_dropped() {
        let r = StoredResponse::new(
            201,
            [
                ("Content-Type", Bytes::from_static(b"application/json")),
                ("Set-Cookie", Bytes::from_static(b"s=1")),
                ("Date", Bytes::from_static(b"now")),
                ("Transfer-Encoding", Bytes::from_static(b"chunked")),
            ],
            Bytes::from_static(b"{}"),
        );
        assert_eq!(
            r.headers(),
            &[(
                "content-type".to_owned(),
                Bytes::from_static(b"application/json")
            )]
        );
    }

    proptest! {
        #[test]
        fn roundtrip(status in 100u16..600, headers in proptest::collection::vec(("[a-z-]{1,20}", proptest::collection::vec(any::<u8>(), 0..40)), 0..8), body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let r = StoredResponse::new(status, headers.into_iter().map(|(n, v)| (n, Bytes::from(v))), Bytes::from(body));
            prop_assert_eq!(StoredResponse::decode(&r.encode()).unwrap(), r);
        }

        #[test]
        fn garbage_is_rejected_or_exact(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            // Never a panic; whatever decodes re-encodes to the very same bytes.
            if let Ok(r) = StoredResponse::decode(&bytes) {
                prop_assert_eq!(r.encode(), bytes);
            }
        }
    }

    #[test]
    fn truncated_is_corrupt() {
        let r = StoredResponse::new(200, [("a", Bytes::from_static(b"b"))], Bytes::new());
        let bytes = r.encode();
        assert!(matches!(
            StoredResponse::decode(&bytes[..bytes.len() - 1]),
            Err(Error::Corrupt(_))
        ));
    }
}
