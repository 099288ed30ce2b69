//! The WhatsApp Cloud API delivery model and its parser.
//!
//! A delivery is `{"object": "whatsapp_business_account", "entry": [{"id", "changes": [{"field",
//! "value"}]}]}`; a `messages` change carries `messages[]` (inbound) and/or `statuses[]`
//! (outbound message status). Every entry and every change is read: one delivery may hold many.
//!
//! Robustness rules, because Meta retries anything but a 200 for seven days:
//! - Not JSON, or JSON whose top level is not a delivery object: [`ParseError`] (answer 400).
//! - Another `object`, or a change of another `field`: counted as ignored (answer 200).
//! - Unknown keys anywhere are tolerated; ids, phone numbers and timestamps are strings (numbers
//!   are accepted and turned into strings).
//! - One malformed item (a message without `id` or `from`, a message or status that is not an
//!   object, a `value` that is not an object, `messages` that is not an array) is counted and
//!   skipped; the others in the same delivery are still accepted. Refusing the whole delivery
//!   would not help: Meta would resend the same bad item for a week and hold the good ones back.
//! - A message whose id the stores cannot hold ([`valid_message_id`]) is malformed in the same
//!   way: it is never half-stored (queued, but without its de-duplication marker).

use serde::{Deserialize, Deserializer, Serialize};

/// The `object` of WhatsApp Business deliveries.
pub const WHATSAPP_OBJECT: &str = "whatsapp_business_account";

/// The body is not a delivery at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not valid JSON (or not UTF-8).
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    /// JSON, but not the delivery shape (`object` string, `entry` array of objects).
    #[error("body is not a webhook delivery: {0}")]
    InvalidShape(String),
}

/// The longest message id accepted, in bytes: the queue's dedup key holds at most 255.
pub const MAX_MESSAGE_ID_LEN: usize = 255;

/// Whether every store can hold `id` as a key: 1 to [`MAX_MESSAGE_ID_LEN`] visible ASCII
/// characters (`!`..=`~`). The queue's dedup key takes up to 255 bytes without control
/// characters; the de-duplication and processed-marker stores take visible ASCII only. A
/// `wamid` is base64 behind `wamid.`, well inside both. One rule, checked once at ingestion,
/// so that no store refuses a message another store already holds.
pub fn valid_message_id(id: &str) -> bool {
    (1..=MAX_MESSAGE_ID_LEN).contains(&id.len()) && id.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// Accepts a JSON string or number and yields its text: ids are strings in real payloads, but a
/// number must not make us drop a message.
fn string_like<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum S {
        Str(String),
        Num(serde_json::Number),
    }
    Ok(match S::deserialize(d)? {
        S::Str(s) => s,
        S::Num(n) => n.to_string(),
    })
}

fn opt_string_like<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum S {
        Str(String),
        Num(serde_json::Number),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Option::<S>::deserialize(d)? {
        Some(S::Str(s)) => Some(s),
        Some(S::Num(n)) => Some(n.to_string()),
        Some(S::Other(_)) | None => None,
    })
}

#[derive(Debug, Deserialize)]
struct RawDelivery {
    object: String,
    entry: Vec<RawEntry>,
}

#[derive(Debug, Deserialize)]
struct RawEntry {
    #[serde(default, deserialize_with = "opt_string_like")]
    #[allow(dead_code)]
    id: Option<String>,
    #[serde(default)]
    changes: Vec<RawChange>,
}

#[derive(Debug, Deserialize)]
struct RawChange {
    #[serde(default)]
    field: String,
    #[serde(default)]
    value: serde_json::Value,
}

#[derive(Debug, Default, Deserialize)]
struct RawMetadata {
    #[serde(default, deserialize_with = "opt_string_like")]
    phone_number_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawContact {
    #[serde(default, deserialize_with = "opt_string_like")]
    wa_id: Option<String>,
    #[serde(default)]
    profile: Option<RawProfile>,
}

#[derive(Debug, Deserialize)]
struct RawProfile {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawMessage {
    #[serde(deserialize_with = "string_like")]
    id: String,
    #[serde(deserialize_with = "string_like")]
    from: String,
    #[serde(default, deserialize_with = "opt_string_like")]
    timestamp: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    text: Option<RawText>,
    #[serde(default)]
    interactive: Option<RawInteractive>,
    #[serde(default)]
    button: Option<RawButton>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct RawText {
    #[serde(default)]
    body: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawInteractive {
    #[serde(default)]
    button_reply: Option<RawReply>,
    #[serde(default)]
    list_reply: Option<RawReply>,
}

#[derive(Debug, Deserialize)]
struct RawReply {
    #[serde(default, deserialize_with = "opt_string_like")]
    id: Option<String>,
    #[serde(default)]
    title: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawButton {
    #[serde(default)]
    payload: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawStatus {
    #[serde(deserialize_with = "string_like")]
    id: String,
    status: String,
    #[serde(default, deserialize_with = "opt_string_like")]
    recipient_id: Option<String>,
    #[serde(default, deserialize_with = "opt_string_like")]
    timestamp: Option<String>,
    #[serde(default)]
    errors: Vec<RawStatusError>,
}

#[derive(Debug, Deserialize)]
struct RawStatusError {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error_data: Option<RawErrorData>,
}

#[derive(Debug, Deserialize)]
struct RawErrorData {
    #[serde(default)]
    details: Option<String>,
}

/// One inbound user message, as put on the queue. Secrets never go in here; the text does
/// (the worker needs it) but is never logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMessage {
    /// The `wamid`: the de-duplication key.
    pub message_id: String,
    /// The sender's WhatsApp id (phone number, digits only).
    pub from: String,
    /// The message `type` (`text`, `interactive`, `button`, `image`, ...); inferred from the
    /// payload's keys when `type` is absent.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text: a text body, an interactive reply's title, a button's text, a media caption.
    pub text: Option<String>,
    /// An interactive reply's id or a quick-reply button's payload.
    pub reply_id: Option<String>,
    /// Meta's `timestamp` (unix seconds), when present and numeric.
    pub timestamp: Option<i64>,
    /// Our business number's id: replies are sent from it.
    pub phone_number_id: String,
    /// The sender's profile name, when the delivery carried one.
    pub contact_name: Option<String>,
    /// The correlation id of the request that delivered it (set at ingestion).
    #[serde(default)]
    pub correlation_id: String,
}

/// The state of an outbound message Meta reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusKind {
    /// Sent to WhatsApp.
    Sent,
    /// Delivered to the device.
    Delivered,
    /// Read by the user.
    Read,
    /// Failed; `errors` says why.
    Failed,
    /// Any other value (Meta adds some from time to time).
    Other,
}

impl StatusKind {
    /// The label used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
            Self::Other => "other",
        }
    }
}

/// An error attached to a failed status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusError {
    /// Meta's error code (e.g. 131047, 130472).
    pub code: Option<i64>,
    /// Title, or message, or details: the most specific text given.
    pub title: String,
}

/// One status update of an outbound message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// The outbound message's id.
    pub message_id: String,
    /// Its new state.
    pub status: StatusKind,
    /// The recipient's WhatsApp id.
    pub recipient_id: Option<String>,
    /// Errors (for `failed`).
    pub errors: Vec<StatusError>,
    /// Meta's `timestamp` (unix seconds), when present and numeric.
    #[serde(default)]
    pub timestamp: Option<i64>,
}

/// What one delivery holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Inbound messages, in delivery order.
    pub messages: Vec<InboundMessage>,
    /// Status updates.
    pub statuses: Vec<StatusUpdate>,
    /// Changes (or whole objects) of a kind this service does not handle.
    pub ignored: usize,
    /// Items skipped because they lacked what we need (a message without `id` or `from`).
    pub malformed: usize,
}

impl Delivery {
    /// Every item the delivery carried: messages, statuses and malformed items.
    pub fn items(&self) -> usize {
        self.messages.len() + self.statuses.len() + self.malformed
    }

    /// Whether the delivery holds messages or statuses and EVERY one of them carries a
    /// timestamp before `cutoff` (unix seconds). An item without a timestamp cannot be shown
    /// old, so it keeps the delivery fresh; a delivery with no items is never stale.
    pub fn all_older_than(&self, cutoff: i64) -> bool {
        let mut stamps = self
            .messages
            .iter()
            .map(|m| m.timestamp)
            .chain(self.statuses.iter().map(|s| s.timestamp))
            .peekable();
        stamps.peek().is_some() && stamps.all(|t| t.is_some_and(|t| t < cutoff))
    }
}

/// Infers the message type from the keys present when `type` is missing.
fn infer_kind(m: &RawMessage) -> String {
    if let Some(k) = &m.kind {
        return k.clone();
    }
    if m.text.is_some() {
        return "text".into();
    }
    if m.interactive.is_some() {
        return "interactive".into();
    }
    if m.button.is_some() {
        return "button".into();
    }
    const KNOWN: &[&str] = &[
        "image", "audio", "video", "document", "sticker", "location", "contacts", "reaction",
        "order", "system",
    ];
    KNOWN
        .iter()
        .find(|k| m.rest.contains_key(**k))
        .map_or_else(|| "unknown".into(), |k| (*k).to_owned())
}

fn caption(m: &RawMessage, kind: &str) -> Option<String> {
    m.rest
        .get(kind)
        .and_then(|v| v.get("caption"))
        .and_then(|c| c.as_str())
        .map(str::to_owned)
}

/// Parses one delivery body (the raw bytes, already signature-checked).
pub fn parse(body: &[u8]) -> Result<Delivery, ParseError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ParseError::InvalidJson(e.to_string()))?;
    let object = value
        .get("object")
        .ok_or_else(|| ParseError::InvalidShape("no \"object\" key".into()))?;
    let Some(object) = object.as_str() else {
        return Err(ParseError::InvalidShape(
            "\"object\" is not a string".into(),
        ));
    };
    let mut out = Delivery::default();
    if object != WHATSAPP_OBJECT {
        out.ignored = 1;
        return Ok(out);
    }
    let raw: RawDelivery =
        serde_json::from_value(value).map_err(|e| ParseError::InvalidShape(e.to_string()))?;
    debug_assert_eq!(raw.object, WHATSAPP_OBJECT);
    for entry in raw.entry {
        for change in entry.changes {
            if change.field != "messages" {
                out.ignored += 1;
                continue;
            }
            let serde_json::Value::Object(value) = change.value else {
                out.malformed += 1;
                continue;
            };
            read_value(value, &mut out);
        }
    }
    Ok(out)
}

/// Takes the array under `key`: absent or `null` is empty; anything else that is not an array
/// counts as one malformed item.
fn take_list(
    value: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
    out: &mut Delivery,
) -> Vec<serde_json::Value> {
    match value.remove(key) {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(items)) => items,
        Some(_) => {
            out.malformed += 1;
            Vec::new()
        }
    }
}

/// Reads one `messages` change field by field, so that one bad field (`"contacts": null`, a
/// `metadata` string) never drops the good messages next to it: each item stands alone.
fn read_value(mut value: serde_json::Map<String, serde_json::Value>, out: &mut Delivery) {
    let metadata: RawMetadata = value
        .remove("metadata")
        .and_then(|m| serde_json::from_value(m).ok())
        .unwrap_or_default();
    let phone_number_id = metadata.phone_number_id.unwrap_or_default();
    // Contacts only add a profile name: a bad one is dropped, never counted.
    let contacts: Vec<RawContact> = match value.remove("contacts") {
        Some(serde_json::Value::Array(cs)) => cs
            .into_iter()
            .filter_map(|c| serde_json::from_value(c).ok())
            .collect(),
        _ => Vec::new(),
    };
    let messages = take_list(&mut value, "messages", out);
    let statuses = take_list(&mut value, "statuses", out);
    for m in messages {
        let Ok(m) = serde_json::from_value::<RawMessage>(m) else {
            out.malformed += 1;
            continue;
        };
        if !valid_message_id(&m.id) || m.from.is_empty() {
            out.malformed += 1;
            continue;
        }
        let kind = infer_kind(&m);
        let (text, reply_id) = if let Some(i) = &m.interactive {
            let r = i.button_reply.as_ref().or(i.list_reply.as_ref());
            (
                r.and_then(|r| r.title.clone()),
                r.and_then(|r| r.id.clone()),
            )
        } else if let Some(b) = &m.button {
            (b.text.clone(), b.payload.clone())
        } else if let Some(t) = &m.text {
            (t.body.clone(), None)
        } else {
            (caption(&m, &kind), None)
        };
        let contact_name = contacts
            .iter()
            .find(|c| c.wa_id.as_deref() == Some(m.from.as_str()))
            .and_then(|c| c.profile.as_ref()?.name.clone());
        out.messages.push(InboundMessage {
            timestamp: m.timestamp.as_deref().and_then(|t| t.parse().ok()),
            message_id: m.id,
            from: m.from,
            kind,
            text,
            reply_id,
            phone_number_id: phone_number_id.clone(),
            contact_name,
            correlation_id: String::new(),
        });
    }
    for s in statuses {
        let Ok(s) = serde_json::from_value::<RawStatus>(s) else {
            out.malformed += 1;
            continue;
        };
        let status = match s.status.as_str() {
            "sent" => StatusKind::Sent,
            "delivered" => StatusKind::Delivered,
            "read" => StatusKind::Read,
            "failed" => StatusKind::Failed,
            _ => StatusKind::Other,
        };
        out.statuses.push(StatusUpdate {
            timestamp: s.timestamp.as_deref().and_then(|t| t.parse().ok()),
            message_id: s.id,
            status,
            recipient_id: s.recipient_id,
            errors: s
                .errors
                .into_iter()
                .map(|e| StatusError {
                    code: e.code,
                    title: e
                        .title
                        .or(e.message)
                        .or(e.error_data.and_then(|d| d.details))
                        .unwrap_or_default(),
                })
                .collect(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn message_ids_the_stores_cannot_hold_are_malformed_not_half_stored() {
        for (id, ok) in [
            ("wamid.HBgMMjUwNzg4MTIzNDU2FQIAEhgU=", true),
            ("x", true),
            ("wamid.é", false),
            ("wamid.with space", false),
            ("wamid.\\u0007", false),
            ("", false),
        ] {
            let body = format!(
                r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"messages":[{{"id":"{id}","from":"250788123456","type":"text","text":{{"body":"hi"}}}},{{"id":"wamid.good","from":"250788123456","type":"text","text":{{"body":"hi"}}}}]}}}}]}}]}}"#
            );
            let d = parse(body.as_bytes()).unwrap();
            assert_eq!(d.malformed, usize::from(!ok), "{id:?}");
            assert_eq!(d.messages.len(), 1 + usize::from(ok), "{id:?}");
        }
        assert!(valid_message_id(&"a".repeat(MAX_MESSAGE_ID_LEN)));
        assert!(!valid_message_id(&"a".repeat(MAX_MESSAGE_ID_LEN + 1)));
    }

    #[test]
    fn staleness_needs_every_item_old() {
        let d = parse(&fixture("status_delivered_read.json")).unwrap();
        assert_eq!(d.items(), 2);
        let newest = d.statuses.iter().filter_map(|s| s.timestamp).max().unwrap();
        assert!(d.all_older_than(newest + 1));
        assert!(!d.all_older_than(newest));
        let mut fresh = d.clone();
        fresh.statuses[0].timestamp = None;
        assert!(
            !fresh.all_older_than(i64::MAX),
            "no timestamp: cannot be shown old"
        );
        assert!(!Delivery::default().all_older_than(i64::MAX));
    }

    #[test]
    fn text_message_fixture() {
        let d = parse(&fixture("text_message.json")).unwrap();
        assert_eq!(d.messages.len(), 1);
        let m = &d.messages[0];
        assert_eq!(m.kind, "text");
        assert_eq!(m.from, "250788123456");
        assert!(m.message_id.starts_with("wamid."));
        assert_eq!(m.text.as_deref(), Some("I am looking for jobs in Kigali"));
        assert_eq!(m.phone_number_id, "106540352242922");
        assert_eq!(m.contact_name.as_deref(), Some("Aline Uwase"));
        assert_eq!(m.timestamp, Some(1_763_740_800));
        assert_eq!(d.ignored + d.malformed, 0);
    }

    #[test]
    fn interactive_and_button_replies_carry_their_ids() {
        let d = parse(&fixture("interactive_replies.json")).unwrap();
        let kinds: Vec<_> = d.messages.iter().map(|m| m.kind.as_str()).collect();
        assert_eq!(kinds, ["interactive", "interactive", "button"]);
        assert_eq!(d.messages[0].reply_id.as_deref(), Some("mobility:confirm"));
        assert_eq!(d.messages[0].text.as_deref(), Some("Yes, book it"));
        assert_eq!(d.messages[1].reply_id.as_deref(), Some("property:kicukiro"));
        assert_eq!(d.messages[2].reply_id.as_deref(), Some("marketplace:more"));
    }

    #[test]
    fn batch_over_several_entries_and_changes_keeps_everything() {
        let d = parse(&fixture("batch_mixed.json")).unwrap();
        let ids: Vec<_> = d.messages.iter().map(|m| m.message_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "wamid.BATCH.0001",
                "wamid.BATCH.0002",
                "wamid.BATCH.0003",
                "wamid.BATCH.0004"
            ]
        );
        // the location message carries no "type": inferred
        assert_eq!(d.messages[1].kind, "location");
        assert_eq!(d.statuses.len(), 1);
        assert_eq!(d.ignored, 1, "the user_preferences change");
        assert_eq!(d.malformed, 1, "the message without an id");
    }

    #[test]
    fn statuses_with_errors() {
        let d = parse(&fixture("status_failed.json")).unwrap();
        assert!(d.messages.is_empty());
        assert_eq!(d.statuses.len(), 1);
        assert_eq!(d.statuses[0].status, StatusKind::Failed);
        assert_eq!(d.statuses[0].errors[0].code, Some(131_047));
        let d = parse(&fixture("status_delivered_read.json")).unwrap();
        let s: Vec<_> = d.statuses.iter().map(|s| s.status).collect();
        assert_eq!(s, [StatusKind::Delivered, StatusKind::Read]);
    }

    #[test]
    fn unknown_field_and_object_are_ignored_not_errors() {
        let d = parse(&fixture("unknown_field.json")).unwrap();
        assert_eq!((d.messages.len(), d.statuses.len(), d.ignored), (0, 0, 1));
        let d = parse(br#"{"object":"page","entry":[]}"#).unwrap();
        assert_eq!(d.ignored, 1);
    }

    #[test]
    fn escaped_and_raw_utf8_text_parse_to_the_same_string() {
        let escaped = fixture("text_escaped_unicode.json");
        let d = parse(&escaped).unwrap();
        assert_eq!(d.messages[0].text.as_deref(), Some("Murakoze café ☕"));
        let raw = String::from_utf8(escaped)
            .unwrap()
            .replace("\\u00e9", "é")
            .replace("\\u2615", "☕");
        let d = parse(raw.as_bytes()).unwrap();
        assert_eq!(d.messages[0].text.as_deref(), Some("Murakoze café ☕"));
    }

    #[test]
    fn invalid_bodies_are_typed_errors() {
        assert!(matches!(
            parse(b"not json"),
            Err(ParseError::InvalidJson(_))
        ));
        assert!(matches!(parse(b"[]"), Err(ParseError::InvalidShape(_))));
        assert!(matches!(parse(b"{}"), Err(ParseError::InvalidShape(_))));
        assert!(matches!(
            parse(br#"{"object":"whatsapp_business_account","entry":"x"}"#),
            Err(ParseError::InvalidShape(_))
        ));
    }

    #[test]
    fn a_bad_sibling_field_never_drops_the_good_messages() {
        let delivery = |value: &str| {
            format!(
                r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{value}}}]}}]}}"#
            )
        };
        let msg = r#"{"id":"wamid.A","from":"250788000001","type":"text","text":{"body":"hi"}}"#;
        for (value, malformed) in [
            (format!(r#"{{"contacts":null,"messages":[{msg}]}}"#), 0),
            (
                format!(r#"{{"contacts":"x","metadata":"y","messages":[{msg}]}}"#),
                0,
            ),
            (format!(r#"{{"statuses":7,"messages":[{msg}]}}"#), 1),
            (
                format!(r#"{{"messages":[{msg},42,{{"id":"wamid.B"}},{{"id":{{}},"from":"1"}}]}}"#),
                3,
            ),
        ] {
            let d = parse(delivery(&value).as_bytes()).unwrap();
            assert_eq!(d.messages.len(), 1, "{value}");
            assert_eq!(d.messages[0].message_id, "wamid.A");
            assert_eq!(d.malformed, malformed, "{value}");
        }
        let d = parse(delivery(r#"{"messages":{"id":"wamid.A"}}"#).as_bytes()).unwrap();
        assert_eq!((d.messages.len(), d.malformed), (0, 1));
        let d = parse(delivery("[1]").as_bytes()).unwrap();
        assert_eq!((d.messages.len(), d.malformed), (0, 1));
    }

    #[test]
    fn deep_nesting_is_a_typed_error_not_a_stack_overflow() {
        let depth = 100_000;
        let body = format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"changes":[{{"field":"messages","value":{{"messages":{}{}}}}}]}}]}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        assert!(matches!(
            parse(body.as_bytes()),
            Err(ParseError::InvalidJson(e)) if e.contains("recursion limit")
        ));
    }

    #[test]
    fn numeric_ids_are_accepted_as_strings() {
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":1,"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":42},"messages":[{"id":"wamid.N","from":250788123456,"timestamp":1700000000,"type":"text","text":{"body":"hi"}}]}}]}]}"#;
        let d = parse(body).unwrap();
        assert_eq!(d.messages[0].from, "250788123456");
        assert_eq!(d.messages[0].phone_number_id, "42");
        assert_eq!(d.messages[0].timestamp, Some(1_700_000_000));
    }

    fn delivery_json(ids: &[String], extra: bool) -> String {
        let messages: Vec<serde_json::Value> = ids
            .iter()
            .map(|id| {
                let mut m = serde_json::json!({
                    "from": "250788123456", "id": id, "timestamp": "1763740800",
                    "type": "text", "text": {"body": format!("hello {id}")}
                });
                if extra {
                    m["context"] = serde_json::json!({"forwarded": true});
                    m["future_field"] = serde_json::json!([1, {"x": null}]);
                }
                m
            })
            .collect();
        serde_json::json!({
            "object": WHATSAPP_OBJECT,
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550001111", "phone_number_id": "106540352242922"},
                "messages": messages
            }}]}]
        })
        .to_string()
    }

    proptest! {
        #[test]
        fn parser_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&body);
        }

        #[test]
        fn parser_never_panics_on_json_values(v in arb_json()) {
            let _ = parse(v.to_string().as_bytes());
            let wrapped = serde_json::json!({"object": WHATSAPP_OBJECT, "entry": [{"changes": [{"field": "messages", "value": v}]}]});
            let _ = parse(wrapped.to_string().as_bytes());
        }

        #[test]
        fn every_message_is_kept_in_order(ids in proptest::collection::vec("wamid\\.[A-Za-z0-9]{1,24}", 0..40),
                                          extra in any::<bool>()) {
            let d = parse(delivery_json(&ids, extra).as_bytes()).unwrap();
            let got: Vec<_> = d.messages.iter().map(|m| m.message_id.clone()).collect();
            prop_assert_eq!(got, ids);
            prop_assert_eq!(d.malformed, 0);
        }

        #[test]
        fn unknown_fields_do_not_change_the_result(ids in proptest::collection::vec("wamid\\.[A-Za-z0-9]{1,24}", 1..10)) {
            let plain = parse(delivery_json(&ids, false).as_bytes()).unwrap();
            let extra = parse(delivery_json(&ids, true).as_bytes()).unwrap();
            prop_assert_eq!(plain, extra);
        }

        #[test]
        fn any_text_survives(text in "\\PC{0,64}") {
            let body = serde_json::json!({"object": WHATSAPP_OBJECT, "entry": [{"changes": [{"field": "messages", "value": {
                "metadata": {"phone_number_id": "1"},
                "messages": [{"id": "wamid.T", "from": "1", "type": "text", "text": {"body": text}}]}}]}]});
            let d = parse(body.to_string().as_bytes()).unwrap();
            prop_assert_eq!(d.messages[0].text.as_deref(), Some(text.as_str()));
        }
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[a-z_]{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                proptest::collection::hash_map(
                    prop_oneof![
                        Just("messages".to_owned()),
                        Just("statuses".to_owned()),
                        Just("id".to_owned()),
                        Just("from".to_owned()),
                        Just("metadata".to_owned()),
                        Just("interactive".to_owned()),
                        "[a-z_]{1,8}"
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
