//! The `Layer` and its settings.

use std::fmt;
use std::sync::Arc;

use http::Method;
use http::request::Parts;
use tower_layer::Layer;

use crate::claim::Idempotency;
use crate::fingerprint::Fingerprint;
use crate::http::service::IdempotencyService;

pub(crate) type ScopeFn = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;
pub(crate) type FingerprintFn = Arc<dyn Fn(&Parts, &[u8]) -> Fingerprint + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) idempotency: Idempotency,
    pub(crate) required: bool,
    pub(crate) methods: Vec<Method>,
    pub(crate) scope: Option<ScopeFn>,
    pub(crate) fingerprint: FingerprintFn,
    pub(crate) max_request_bytes: usize,
}

/// Guards unsafe methods with `Idempotency-Key` claims. See the [module docs](crate::http).
///
/// Defaults: key required on POST and PATCH, empty scope, fingerprint over method, path,
/// query and body ([`Fingerprint::of_request`]), request bodies up to 1 MiB. Store policies
/// (TTL, lease, stored statuses, fail closed/open) come from the [`Idempotency`]'s
/// [`Config`](crate::Config).
#[derive(Clone)]
pub struct IdempotencyLayer {
    settings: Arc<Settings>,
}

impl fmt::Debug for IdempotencyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyLayer")
            .field("required", &self.settings.required)
            .field("methods", &self.settings.methods)
            .field("max_request_bytes", &self.settings.max_request_bytes)
            .finish_non_exhaustive()
    }
}

impl IdempotencyLayer {
    /// A layer claiming keys through `idempotency`.
    pub fn new(idempotency: Idempotency) -> Self {
        IdempotencyLayer {
            settings: Arc::new(Settings {
                idempotency,
                required: true,
                methods: vec![Method::POST, Method::PATCH],
                scope: None,
                fingerprint: Arc::new(|parts, body| {
                    Fingerprint::of_request(
                        parts.method.as_str(),
                        parts.uri.path(),
                        parts.uri.query(),
                        body,
                    )
                }),
                max_request_bytes: 1024 * 1024,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        f(Arc::make_mut(&mut self.settings));
        self
    }

    /// Whether guarded requests without a key are refused (400) or pass through unprotected
    /// (default: required).
    pub fn required(self, required: bool) -> Self {
        self.edit(|s| s.required = required)
    }

    /// The guarded methods (default POST and PATCH). Safe methods (GET, HEAD, OPTIONS) are
    /// idempotent by definition and ignored even if listed.
    pub fn methods(self, methods: impl IntoIterator<Item = Method>) -> Self {
        let methods = methods.into_iter().filter(|m| !m.is_safe()).collect();
        self.edit(|s| s.methods = methods)
    }

    /// Derive the key scope from the request (e.g. a tenant or user id that an earlier
    /// layer put in the extensions). `None` means the empty scope.
    pub fn scope(self, f: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        self.edit(|s| s.scope = Some(Arc::new(f)))
    }

    /// Replace the fingerprint (e.g. to ignore a volatile field of the body).
    pub fn fingerprint(
        self,
        f: impl Fn(&Parts, &[u8]) -> Fingerprint + Send + Sync + 'static,
    ) -> Self {
        self.edit(|s| s.fingerprint = Arc::new(f))
    }

    /// Largest request body buffered for fingerprinting (default 1 MiB; 413 beyond).
    pub fn max_request_bytes(self, limit: usize) -> Self {
        self.edit(|s| s.max_request_bytes = limit)
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = IdempotencyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IdempotencyService::new(inner, Arc::clone(&self.settings))
    }
}
