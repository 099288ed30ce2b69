//! The address of one instance of a service, with its weight and metadata.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// One instance of a service: a URL (`http://10.0.0.7:8080`) or a bare address
/// (`10.0.0.7:5432`), a balancing weight, and free-form metadata (zone, version, ...).
///
/// Cheap to clone (an `Arc` inside): [`Registry::call`](crate::Registry::call) hands the chosen
/// endpoint to your closure by value, so an `async move` block can keep it.
///
/// A URL may carry credentials (`https://user:password@host/`) or a token in its query. Only
/// [`url`](Self::url) returns it whole, for making the call; everything the registry shows
/// (its `Display` and `Debug`, reports, events, errors, breaker names) uses
/// [`redacted`](Self::redacted), which drops them.
///
/// ```
/// use steadfast_service_registry::Endpoint;
///
/// let ep = Endpoint::new("http://10.0.0.7:8080").weight(3).metadata("zone", "kigali-1");
/// assert_eq!(ep.url(), "http://10.0.0.7:8080");
/// assert_eq!(ep.address(), Some("10.0.0.7:8080"));
/// assert_eq!(ep.get_weight(), 3);
/// assert_eq!(ep.get_metadata("zone"), Some("kigali-1"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint(Arc<Inner>);

#[derive(Clone, PartialEq, Eq)]
struct Inner {
    url: String,
    /// [`Endpoint::redact`] of `url`, computed once: reports and events show it often.
    redacted: String,
    weight: u32,
    metadata: BTreeMap<String, String>,
}

impl Endpoint {
    /// An endpoint with weight 1 and no metadata.
    pub fn new(url: impl Into<String>) -> Self {
        let url = url.into();
        Self(Arc::new(Inner {
            redacted: Self::redact(&url),
            url,
            weight: 1,
            metadata: BTreeMap::new(),
        }))
    }

    /// Sets the weight used by [`Balance::WeightedRoundRobin`](crate::Balance::WeightedRoundRobin)
    /// (default 1; 0 is rejected when the service is built).
    #[must_use]
    pub fn weight(mut self, weight: u32) -> Self {
        self.inner_mut().weight = weight;
        self
    }

    /// Adds one metadata entry (shown in the health report).
    #[must_use]
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.inner_mut().metadata.insert(key.into(), value.into());
        self
    }

    /// The URL or address exactly as given; it identifies the endpoint within its service.
    pub fn url(&self) -> &str {
        &self.0.url
    }

    /// The URL without user info, query or fragment: what to show in logs, metrics, reports
    /// and errors. See [`Endpoint::redact`].
    ///
    /// ```
    /// # use steadfast_service_registry::Endpoint;
    /// let ep = Endpoint::new("https://bot:s3cret@10.0.0.7:8443/v1/jobs?key=abc");
    /// assert_eq!(ep.redacted(), "https://10.0.0.7:8443/v1/jobs");
    /// assert_eq!(ep.to_string(), "https://10.0.0.7:8443/v1/jobs");
    /// ```
    pub fn redacted(&self) -> &str {
        &self.0.redacted
    }

    /// `url` (or a bare `host:port`) without the parts that may hold secrets: user info
    /// (`user:password@`), query and fragment. Scheme, host, port and path are kept. A path
    /// that contains `@` is replaced by `/…`: in a malformed URL whose password holds a `/`,
    /// what looks like the path may be the rest of the password.
    ///
    /// ```
    /// # use steadfast_service_registry::Endpoint;
    /// assert_eq!(Endpoint::redact("http://u:p@h:80/x?token=1#f"), "http://h:80/x");
    /// assert_eq!(Endpoint::redact("u:p@10.0.0.1:5432"), "10.0.0.1:5432");
    /// assert_eq!(Endpoint::redact("http://u:p/w@h:80/x"), "http://u:p/…");
    /// ```
    pub fn redact(url: &str) -> String {
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) => (Some(scheme), rest),
            None => (None, url),
        };
        // RFC 3986: the authority ends at the first '/', '?' or '#'; the query and fragment
        // go whatever they hold.
        let rest = rest.split(['?', '#']).next().unwrap_or(rest);
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let path = if path.contains('@') { "/…" } else { path };
        match scheme {
            Some(scheme) => format!("{scheme}://{host}{path}"),
            None => format!("{host}{path}"),
        }
    }

    /// `host:port` without scheme or path (what the TCP health check connects to), or `None`
    /// when there is no port to connect to.
    pub fn address(&self) -> Option<&str> {
        let rest = match self.0.url.split_once("://") {
            Some((_, rest)) => rest,
            None => &self.0.url,
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
        // Drop user info, then require an explicit, numeric port.
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let (host, port) = authority.rsplit_once(':')?;
        if host.is_empty() || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(authority)
    }

    /// The balancing weight.
    pub fn get_weight(&self) -> u32 {
        self.0.weight
    }

    /// One metadata value.
    pub fn get_metadata(&self, key: &str) -> Option<&str> {
        self.0.metadata.get(key).map(String::as_str)
    }

    /// All metadata, sorted by key.
    pub fn all_metadata(&self) -> &BTreeMap<String, String> {
        &self.0.metadata
    }

    /// Joins `path` to the URL with exactly one `/` between them.
    ///
    /// ```
    /// # use steadfast_service_registry::Endpoint;
    /// assert_eq!(Endpoint::new("http://a:1/").join("/health"), "http://a:1/health");
    /// assert_eq!(Endpoint::new("http://a:1").join("v1/jobs"), "http://a:1/v1/jobs");
    /// ```
    pub fn join(&self, path: &str) -> String {
        format!(
            "{}/{}",
            self.0.url.trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }

    fn inner_mut(&mut self) -> &mut Inner {
        // Builders run before the endpoint is shared, so this almost never copies.
        Arc::make_mut(&mut self.0)
    }
}

impl From<&str> for Endpoint {
    fn from(url: &str) -> Self {
        Self::new(url)
    }
}

impl From<String> for Endpoint {
    fn from(url: String) -> Self {
        Self::new(url)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.0.redacted)
            .field("weight", &self.0.weight)
            .field("metadata", &self.0.metadata)
            .finish()
    }
}

/// The [redacted](Endpoint::redacted) URL: safe to log.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.redacted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_of_urls_and_bare_addresses() {
        assert_eq!(Endpoint::new("http://h:80/x?y").address(), Some("h:80"));
        assert_eq!(Endpoint::new("https://u:p@h:443").address(), Some("h:443"));
        assert_eq!(
            Endpoint::new("10.0.0.1:5432").address(),
            Some("10.0.0.1:5432")
        );
        assert_eq!(Endpoint::new("[::1]:8080").address(), Some("[::1]:8080"));
        assert_eq!(Endpoint::new("http://h/x").address(), None);
        assert_eq!(Endpoint::new("http://h:port").address(), None);
        assert_eq!(Endpoint::new("").address(), None);
    }

    #[test]
    fn redaction_drops_credentials_query_and_fragment() {
        let cases = [
            (
                "http://user:s3cretpass@127.0.0.1:8080/x",
                "http://127.0.0.1:8080/x",
            ),
            ("https://tok@h/a/b?api_key=s3cretpass", "https://h/a/b"),
            ("http://h:1#s3cretpass", "http://h:1"),
            ("http://h:1?s3cretpass", "http://h:1"),
            ("http://user:s3cret@pass@h:1/x", "http://h:1/x"),
            ("http://[::1]:8080/v1", "http://[::1]:8080/v1"),
            ("user:s3cretpass@10.0.0.1:5432", "10.0.0.1:5432"),
            ("http://h:1/users/a@b", "http://h:1/…"),
            ("http://h:1", "http://h:1"),
            ("", ""),
        ];
        for (url, want) in cases {
            assert_eq!(Endpoint::redact(url), want, "{url}");
        }
        let ep = Endpoint::new("http://user:s3cretpass@127.0.0.1:8080/x?k=s3cretpass");
        assert_eq!(
            ep.url(),
            "http://user:s3cretpass@127.0.0.1:8080/x?k=s3cretpass"
        );
        for shown in [ep.to_string(), format!("{ep:?}"), ep.redacted().to_owned()] {
            assert!(!shown.contains("s3cretpass"), "{shown}");
        }
    }

    #[test]
    fn builder_on_shared_endpoint_does_not_change_the_other_copy() {
        let a = Endpoint::new("http://h:1");
        let b = a.clone().weight(5);
        assert_eq!(a.get_weight(), 1);
        assert_eq!(b.get_weight(), 5);
    }

    use proptest::prelude::*;

    proptest::proptest! {
        #[test]
        fn address_never_panics(s in ".*") {
            let _ = Endpoint::new(s).address();
        }

        #[test]
        fn redaction_never_shows_user_info_or_query(
            user in "[a-z]{1,8}",
            pass in "[A-Za-z0-9]{12,20}",
            host in "[a-z]{1,10}(:[0-9]{1,5})?",
            path in "(/[a-z0-9]{0,8}){0,3}",
            query in "[a-z0-9=&]{0,12}",
        ) {
            let url = format!("https://{user}:{pass}@{host}{path}?{query}");
            let shown = Endpoint::redact(&url);
            prop_assert!(!shown.contains(&pass), "{} -> {}", url, shown);
            prop_assert_eq!(shown, format!("https://{host}{path}"));
        }
    }
}
