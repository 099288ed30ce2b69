//! The ops console: web pages over the admin API, under `/admin/ui`, one component for every
//! service.
//!
//! A service describes what it has with the [`Console`] builder and merges
//! [`Console::router`] into the router of the listener that serves `/admin` (the ops listener
//! when there is one), only when an admin token is configured:
//!
//! ```no_run
//! # use axum::Router;
//! # use steadfast_service_kit::console::{Console, DeadLetterView};
//! # use steadfast_service_kit::secret::Secret;
//! # fn admin_api() -> Router { Router::new() }
//! let console = Console::new(Secret::new("an-admin-token-0123456789"), admin_api())
//!     .brand("Steadfast payments")
//!     .dead_letters(DeadLetterView::default().label_key("reference"))
//!     .breakers()
//!     .sagas("a recovery loop picks it up within a few seconds");
//! let app: Router = Router::new().merge(console.router());
//! ```
//!
//! `admin_api` is the service's admin router as mounted (`/admin/...` paths, its state
//! applied, its token check included): the console reads through it in process ([`api`]),
//! so the shared endpoints of [`crate::admin::AdminApi`] are what the pages expect.
//!
//! Pages:
//!
//! - [`overview`]: queue depth by state over the last hour, dead letters, oldest due age,
//!   throughput, breakers open (`GET /admin/stats`); refreshed in place every few seconds.
//! - [`dead_letters`]: a filtered, paged list; one message with its (masked) payload and every
//!   attempt's error; replay one, bulk replay by the filter, purge with a confirmation.
//! - [`breakers`]: every breaker (state, failure rate, calls, time until half-open) with
//!   open / close / reset; with [`Console::registry`], each service's endpoints and health.
//! - [`sagas`]: sagas by state, one saga's steps; retry or resolve (confirmed) a parked one.
//! - the service's own, added with [`Console::page`]: they use [`auth::PageSession`] (the
//!   login check, the CSRF token, this console), [`api::Api`] (an `Extension`) and [`html`].
//!
//! How it is built, and why:
//!
//! - **A client of the admin API.** Pages read through the admin router in process, and every
//!   button calls the admin API from the browser (`fetch`, with the CSRF header): there is one
//!   implementation of each action, the one `curl` uses too.
//! - **Server-rendered HTML** written with one escaping helper ([`html`]); one small script and
//!   one stylesheet embedded in the binary ([`assets`]); no CDN, no build step, works offline.
//!   The pages are sent with a strict Content-Security-Policy (no inline script or style).
//! - **Login** by the admin token, kept as an HMAC'd session cookie; CSRF tokens for actions
//!   ([`auth`]). Phone numbers are masked wherever a page shows one ([`crate::mask`]).

pub mod api;
pub mod auth;
pub mod breakers;
pub mod dead_letters;
pub mod html;
pub mod overview;
pub mod sagas;

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Extension, Router};
use http::{HeaderValue, header};

use crate::secret::Secret;

pub use dead_letters::{DeadLetterView, GroupColumn};

/// Where the console is mounted.
pub const BASE: &str = "/admin/ui";

/// The embedded stylesheet and script.
pub mod assets {
    /// `console.css`.
    pub const CSS: &str = include_str!("assets/console.css");
    /// `console.js`.
    pub const JS: &str = include_str!("assets/console.js");
    /// `icon.svg`.
    pub const ICON: &str = include_str!("assets/icon.svg");
}

/// One service's console: what it shows, and its routes ([`Console::router`]). Cheap to
/// clone; handlers find it in the request's extensions.
#[derive(Clone)]
pub struct Console(Arc<Inner>);

#[derive(Clone)]
struct Inner {
    token: Secret,
    api: api::Api,
    brand: String,
    trust_forwarded_proto: bool,
    dead_letters: Option<DeadLetterView>,
    breakers: bool,
    registry: bool,
    sagas: Option<String>,
    pages: Vec<(String, String, MethodRouter)>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("brand", &self.0.brand)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// A console logging in with `token`, reading and acting through `admin_api` (see the
    /// module doc). Shows the overview only until pages are added.
    pub fn new(token: Secret, admin_api: Router) -> Self {
        let api = api::Api::new(admin_api, &token);
        Self(Arc::new(Inner {
            token,
            api,
            brand: "Steadfast".to_owned(),
            trust_forwarded_proto: false,
            dead_letters: None,
            breakers: false,
            registry: false,
            sagas: None,
            pages: Vec::new(),
        }))
    }

    fn with(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        f(Arc::make_mut(&mut self.0));
        self
    }

    /// The name in the navigation bar (`Steadfast webhook`).
    pub fn brand(self, brand: impl Into<String>) -> Self {
        let brand = brand.into();
        self.with(|i| i.brand = brand)
    }

    /// Believe `X-Forwarded-Proto: https` (a TLS proxy in front) for the cookie's `Secure`
    /// flag; the same switch that makes the service believe `X-Forwarded-For`.
    pub fn trust_forwarded_proto(self, trust: bool) -> Self {
        self.with(|i| i.trust_forwarded_proto = trust)
    }

    /// The dead-letters pages (`/admin/dlq`).
    pub fn dead_letters(self, view: DeadLetterView) -> Self {
        self.with(|i| i.dead_letters = Some(view))
    }

    /// The breakers page (`/admin/breakers`).
    pub fn breakers(self) -> Self {
        self.with(|i| i.breakers = true)
    }

    /// The breakers page also shows the service registry (`/admin/registry`).
    pub fn registry(self) -> Self {
        self.with(|i| {
            i.breakers = true;
            i.registry = true;
        })
    }

    /// The sagas pages (`/admin/sagas`); `retry_hint` says when a retried saga resumes.
    pub fn sagas(self, retry_hint: impl Into<String>) -> Self {
        let hint = retry_hint.into();
        self.with(|i| i.sagas = Some(hint))
    }

    /// A page of the service's own at `BASE + path`, with a navigation entry `label`
    /// (shown before Sagas).
    pub fn page(self, path: &str, label: &str, route: MethodRouter) -> Self {
        let (path, label) = (path.to_owned(), label.to_owned());
        self.with(|i| i.pages.push((path, label, route)))
    }

    pub(crate) fn token(&self) -> &Secret {
        &self.0.token
    }

    pub(crate) fn trusts_forwarded_proto(&self) -> bool {
        self.0.trust_forwarded_proto
    }

    pub(crate) fn dead_letter_view(&self) -> DeadLetterView {
        self.0.dead_letters.clone().unwrap_or_default()
    }

    pub(crate) fn shows_registry(&self) -> bool {
        self.0.registry
    }

    pub(crate) fn saga_retry_hint(&self) -> &str {
        self.0.sagas.as_deref().unwrap_or("")
    }

    /// The navigation entries: (path under [`BASE`], label).
    pub(crate) fn nav(&self) -> Vec<(String, String)> {
        let i = &self.0;
        let mut nav = vec![(String::new(), "Overview".to_owned())];
        if i.dead_letters.is_some() {
            nav.push(("/dead-letters".to_owned(), "Dead letters".to_owned()));
        }
        if i.breakers {
            let label = if i.registry {
                "Breakers & services"
            } else {
                "Breakers"
            };
            nav.push(("/breakers".to_owned(), label.to_owned()));
        }
        nav.extend(i.pages.iter().map(|(p, l, _)| (p.clone(), l.clone())));
        if i.sagas.is_some() {
            nav.push(("/sagas".to_owned(), "Sagas".to_owned()));
        }
        nav
    }

    pub(crate) fn brand_name(&self) -> &str {
        &self.0.brand
    }

    /// The console's routes (full paths, under [`BASE`]), for the listener that serves
    /// `/admin`.
    pub fn router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let i = &self.0;
        let mut pages = Router::new()
            .route("/", get(overview::page))
            .route("/overview/live", get(overview::live))
            .route("/login", get(auth::login_form).post(auth::login))
            .route("/logout", post(auth::logout));
        if i.dead_letters.is_some() {
            pages = pages
                .route("/dead-letters", get(dead_letters::list))
                .route("/dead-letters/{id}", get(dead_letters::message));
        }
        if i.breakers {
            pages = pages.route("/breakers", get(breakers::page));
        }
        if i.sagas.is_some() {
            pages = pages
                .route("/sagas", get(sagas::list))
                .route("/sagas/{id}", get(sagas::saga));
        }
        for (path, _, route) in &i.pages {
            pages = pages.route(path, route.clone());
        }
        let pages = pages
            .layer(axum::middleware::from_fn(secure_headers))
            .route("/assets/console.css", get(css))
            .route("/assets/console.js", get(js))
            .route("/assets/icon.svg", get(icon));
        Router::new()
            .nest(BASE, pages)
            .route(
                "/admin/ui/",
                get(|| async { axum::response::Redirect::to(BASE) }),
            )
            .layer(Extension(i.api.clone()))
            .layer(Extension(self.clone()))
            .with_state(())
    }
}

async fn secure_headers(request: Request, next: Next) -> Response {
    html::secure(next.run(request).await)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", assets::CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", assets::JS)
}

async fn icon() -> Response {
    asset("image/svg+xml", assets::ICON)
}
