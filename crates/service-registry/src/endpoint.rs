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
    weight: u32,
    metadata: BTreeMap<String, String>,
}

impl Endpoint {
    /// An endpoint with weight 1 and no metadata.
    pub fn new(url: impl Into<String>) -> Self {
        Self(Arc::new(Inner {
            url: url.into(),
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
            .field("url", &self.0.url)
            .field("weight", &self.0.weight)
            .field("metadata", &self.0.metadata)
            .finish()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.url)
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
    fn builder_on_shared_endpoint_does_not_change_the_other_copy() {
        let a = Endpoint::new("http://h:1");
        let b = a.clone().weight(5);
        assert_eq!(a.get_weight(), 1);
        assert_eq!(b.get_weight(), 5);
    }

    proptest::proptest! {
        #[test]
        fn address_never_panics(s in ".*") {
            let _ = Endpoint::new(s).address();
        }
    }
}
