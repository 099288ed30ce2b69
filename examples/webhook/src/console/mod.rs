//! The ops console: web pages over the admin API, under `/admin/ui`.
//!
//! Served by the binary itself, on the listener that serves `/admin` (the ops listener when
//! `ops_listen` is set), and only when the admin API is enabled (an admin token is
//! configured). Pages:
//!
//! - [`overview`]: queue depth by state over the last hour, dead letters, oldest due age,
//!   throughput, breakers open; refreshed in place every few seconds.
//! - [`dead_letters`]: a filtered, paged list; one message with its (masked) payload and every
//!   attempt's error; replay one, bulk replay by the filter, purge with a confirmation.
//! - [`breakers`]: every breaker (state, failure rate, calls, time until half-open) with
//!   open / close / reset; each service's endpoints with their health.
//! - [`conversations`]: one sender's conversation by number.
//! - [`sagas`]: reply-action sagas by state, one saga's steps, retry a parked one.
//!
//! How it is built, and why:
//!
//! - **A client of the admin API.** Pages read through the admin router in process
//!   ([`api`]), and every button calls the admin API from the browser (`fetch`, with the CSRF
//!   header): there is one implementation of each action, the one `curl` uses too.
//! - **Server-rendered HTML** written with one escaping helper ([`html`]); one small script and
//!   one stylesheet embedded in the binary ([`assets`]); no CDN, no build step, works offline.
//!   The pages are sent with a strict Content-Security-Policy (no inline script or style).
//! - **Login** by the admin token, kept as an HMAC'd session cookie; CSRF tokens for actions
//!   ([`auth`]). Phone numbers are masked wherever a page shows one ([`crate::mask`]).

pub mod api;
pub mod auth;
pub mod breakers;
pub mod conversations;
pub mod dead_letters;
pub mod html;
pub mod overview;
pub mod sagas;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use http::{HeaderValue, header};

use crate::app::AppState;

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

/// The console's routes (full paths, under [`BASE`]), or `None` when the admin API is disabled.
pub fn router(state: &AppState) -> Option<Router<AppState>> {
    let api = api::Api::new(state)?;
    let pages = Router::new()
        .route("/", get(overview::page))
        .route("/overview/live", get(overview::live))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/dead-letters", get(dead_letters::list))
        .route("/dead-letters/{id}", get(dead_letters::message))
        .route("/breakers", get(breakers::page))
        .route("/conversations", get(conversations::page))
        .route("/sagas", get(sagas::list))
        .route("/sagas/{id}", get(sagas::saga))
        .layer(axum::middleware::from_fn(secure_headers))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .route("/assets/icon.svg", get(icon));
    Some(
        Router::new()
            .nest(BASE, pages)
            .route(
                "/admin/ui/",
                get(|| async { axum::response::Redirect::to(BASE) }),
            )
            .layer(Extension(api)),
    )
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
