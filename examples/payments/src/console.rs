//! The ops console at `/admin/ui`: the kit's ([`steadfast_service_kit::console`]) over this
//! service's admin API, with a ledger page of its own.
//!
//! Pages: overview (the callback queue), dead letters (parked callbacks: a callback the
//! ledger could not place, for an unknown payout say), the provider breaker, payout sagas
//! (retry or resolve a parked one), and [`ledger`]: the ledger's sums and whether its
//! invariant holds.

use std::fmt::Write as _;

use axum::Extension;
use axum::Router;
use axum::response::Response;
use axum::routing::get;
use serde_json::Value;
use steadfast_service_kit::console::api::Api;
use steadfast_service_kit::console::auth::PageSession;
use steadfast_service_kit::console::html::{self, esc};
use steadfast_service_kit::console::{Console, DeadLetterView, GroupColumn};

use crate::app::AppState;

/// The console over `admin` (the admin router, [`crate::admin::router`]).
pub fn console(state: &AppState, admin: Router<AppState>) -> Console {
    let admin_api = Router::new()
        .nest("/admin", admin)
        .with_state(state.clone());
    Console::new(state.config.admin_token.clone(), admin_api)
        .brand("Steadfast payments")
        .trust_forwarded_proto(state.config.momo.trusted_proxy_hops > 0)
        .dead_letters(DeadLetterView::default().label_key("transactionId").group(
            GroupColumn::Payload("For".to_owned(), "externalId".to_owned()),
        ))
        .breakers()
        .page("/ledger", "Ledger", get(ledger))
        .sagas("this process's recovery loop picks it up within a few seconds")
}

/// `GET /admin/ui/ledger`: the sums of `GET /admin/ledger` and the invariant.
pub async fn ledger(
    PageSession(session, console): PageSession,
    Extension(api): Extension<Api>,
) -> Response {
    let mut body = String::new();
    match api.get("/admin/ledger").await {
        Err(e) => body.push_str(&html::error_box(&e)),
        Ok(v) => {
            let holds = v["invariant_holds"].as_bool() == Some(true);
            let _ = write!(
                body,
                "<section class=\"cards\" aria-label=\"Invariant\"><div class=\"card\"><h2>Invariant</h2><p class=\"big\">{}</p>\
                 <p class=\"sub\">balances = deposits − settled payouts; reserved = pending payouts; no account negative</p></div></section>",
                html::badge(if holds { "ok" } else { "failed" })
            );
            body.push_str(
                "<table class=\"list\"><caption>Sums (minor units)</caption><thead><tr><th scope=\"col\">Sum</th><th scope=\"col\" class=\"num\">Value</th></tr></thead><tbody>",
            );
            let totals = &v["totals"];
            for (key, label) in [
                ("balances", "Balances"),
                ("reserved", "Reserved"),
                ("deposits", "Deposits"),
                ("settled_payouts", "Settled payouts"),
                ("pending_payouts", "Pending payouts"),
                ("pending_count", "Pending payouts (count)"),
                ("broken_accounts", "Broken accounts"),
            ] {
                let value = match &totals[key] {
                    Value::Null => "—".to_owned(),
                    other => other.to_string(),
                };
                let _ = write!(
                    body,
                    "<tr><th scope=\"row\">{label}</th><td class=\"num\">{}</td></tr>",
                    esc(&value)
                );
            }
            body.push_str("</tbody></table>");
        }
    }
    html::page(&console, "Ledger", "/ledger", &session.csrf, &body)
}
