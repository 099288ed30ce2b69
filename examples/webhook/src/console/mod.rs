//! The webhook's ops console: the kit's ([`steadfast_service_kit::console`], where the pages,
//! login and assets live) with the webhook's own conversations page, under `/admin/ui`.
//!
//! Served on the listener that serves `/admin` (the ops listener when `ops_listen` is set),
//! and only when the admin API is enabled (an admin token is configured). Pages: overview,
//! dead letters (filterable by the downstream service a message failed on), breakers and the
//! registry's services, [`conversations`], reply-action sagas.

pub mod conversations;

use axum::Router;
use axum::routing::get;
pub use steadfast_service_kit::console::{
    BASE, Console, DeadLetterView, api, assets, auth, breakers, dead_letters, html, overview, sagas,
};

use crate::app::AppState;

/// The console's routes (full paths, under [`BASE`]), or `None` when the admin API is disabled.
pub fn router(state: &AppState) -> Option<Router<AppState>> {
    let token = state.config.admin_token.clone()?;
    let admin = crate::admin::router(state)?;
    let admin_api = Router::new()
        .nest("/admin", admin)
        .with_state(state.clone());
    let services = state
        .config
        .services
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let console = Console::new(token, admin_api)
        .brand("Steadfast webhook")
        .trust_forwarded_proto(state.config.http.trust_forwarded_for)
        .dead_letters(DeadLetterView::default().services(services))
        .registry()
        .page("/conversations", "Conversations", get(conversations::page))
        .sagas("the recovery loop picks it up within actions.recovery_poll_ms");
    Some(console.router())
}
