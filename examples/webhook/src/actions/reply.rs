//! The `actions` of a downstream reply: which of them run, and which are ignored and why.
//!
//! The reply's text must reach the user whatever the actions look like, so nothing here
//! fails: an action that cannot run is ignored, logged (its type, never its data) and counted
//! in `webhook_actions_ignored_total{reason}`.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use serde_json::Value;

use super::ActionType;

/// Why an action of a reply does not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Not an object with a string `type` (or `actions` is not an array).
    Malformed,
    /// A type this service does not know.
    UnknownType,
    /// A known type with no URL in `[actions]`.
    NotConfigured,
    /// A second action of a type already listed: the first one runs.
    Duplicate,
}

impl Ignored {
    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::Malformed => "malformed",
            Ignored::UnknownType => "unknown_type",
            Ignored::NotConfigured => "not_configured",
            Ignored::Duplicate => "duplicate",
        }
    }
}

/// The longest part of an unknown type name that is logged.
const LOGGED_TYPE_LEN: usize = 64;

/// The actions of `actions` (a reply's `actions` value) that run, by type, with their `data`
/// (`null` when absent); and the ones ignored, with the type as written (cut to 64
/// characters; empty when there was none).
pub fn select(
    actions: &Value,
    configured: impl Fn(ActionType) -> bool,
) -> (BTreeMap<ActionType, Value>, Vec<(Ignored, String)>) {
    let mut run = BTreeMap::new();
    let mut ignored = Vec::new();
    let items = match actions {
        Value::Null => return (run, ignored),
        Value::Array(items) => items,
        _ => {
            ignored.push((Ignored::Malformed, String::new()));
            return (run, ignored);
        }
    };
    for item in items {
        let Some(name) = item.get("type").and_then(Value::as_str) else {
            ignored.push((Ignored::Malformed, String::new()));
            continue;
        };
        let shown = || name.chars().take(LOGGED_TYPE_LEN).collect::<String>();
        let Some(kind) = ActionType::parse(name) else {
            ignored.push((Ignored::UnknownType, shown()));
            continue;
        };
        if !configured(kind) {
            ignored.push((Ignored::NotConfigured, shown()));
            continue;
        }
        match run.entry(kind) {
            Entry::Occupied(_) => ignored.push((Ignored::Duplicate, shown())),
            Entry::Vacant(slot) => {
                slot.insert(item.get("data").cloned().unwrap_or(Value::Null));
            }
        }
    }
    (run, ignored)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::worker::downstream::DownstreamReply;

    #[test]
    fn a_reply_with_actions_parses_and_each_action_is_kept_or_ignored_with_a_reason() {
        let reply: DownstreamReply = serde_json::from_value(json!({
            "reply": "Your order is placed",
            "done": false,
            "actions": [
                {"type": "notify_sales", "data": {"lead": 7}},
                {"type": "create_order", "data": {"sku": "A1", "qty": 2}},
                {"type": "create_order", "data": {"sku": "B2"}},
                {"type": "flag_for_review"},
                {"type": "launch_rocket", "data": {}},
                {"data": {"no": "type"}},
                "not an object",
                {"type": "create_support_ticket"}
            ]
        }))
        .unwrap();
        assert_eq!(reply.reply.as_deref(), Some("Your order is placed"));
        let configured = |k: ActionType| k != ActionType::CreateSupportTicket;
        let (run, ignored) = select(&reply.actions, configured);
        // Step order, not reply order; the first of a type wins; data passed through.
        assert_eq!(
            run.into_iter().collect::<Vec<_>>(),
            vec![
                (ActionType::CreateOrder, json!({"sku": "A1", "qty": 2})),
                (ActionType::NotifySales, json!({"lead": 7})),
                (ActionType::FlagForReview, Value::Null),
            ]
        );
        assert_eq!(
            ignored,
            vec![
                (Ignored::Duplicate, "create_order".to_owned()),
                (Ignored::UnknownType, "launch_rocket".to_owned()),
                (Ignored::Malformed, String::new()),
                (Ignored::Malformed, String::new()),
                (Ignored::NotConfigured, "create_support_ticket".to_owned()),
            ]
        );
    }

    #[test]
    fn a_reply_without_actions_or_with_a_bad_actions_value_still_parses() {
        let plain: DownstreamReply = serde_json::from_value(json!({"reply": "hi"})).unwrap();
        let (run, ignored) = select(&plain.actions, |_| true);
        assert!(run.is_empty() && ignored.is_empty());
        let odd: DownstreamReply =
            serde_json::from_value(json!({"reply": "hi", "actions": {"type": "create_order"}}))
                .unwrap();
        assert_eq!(odd.reply.as_deref(), Some("hi"));
        let (run, ignored) = select(&odd.actions, |_| true);
        assert!(run.is_empty());
        assert_eq!(ignored, vec![(Ignored::Malformed, String::new())]);
        let long = "x".repeat(500);
        let (_, ignored) = select(&json!([{ "type": long }]), |_| true);
        assert_eq!(ignored[0].1.len(), 64);
    }
}
