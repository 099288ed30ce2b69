//! Routing a message to a downstream service: by interactive reply id, by keyword, by the
//! conversation's current service, else the default (the AI agent).

use crate::payload::InboundMessage;

/// Lower-cases and keeps letters and digits, one space between words: `"Book  RIDE!"` →
/// `"book ride"`. Keywords and message texts are compared in this form.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

/// Why a route was chosen (logged and counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteReason {
    /// An interactive/button reply id `"<service>:..."` named the service.
    ReplyId,
    /// A keyword or phrase of the service appears in the text.
    Keyword,
    /// No keyword: the conversation stays with the service it is talking to.
    Conversation,
    /// Nothing matched: the default service.
    Default,
}

impl RouteReason {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReplyId => "reply_id",
            Self::Keyword => "keyword",
            Self::Conversation => "conversation",
            Self::Default => "default",
        }
    }
}

/// The routing table, in priority order.
#[derive(Debug, Clone)]
pub struct Router {
    services: Vec<(String, Vec<String>)>,
    default: String,
}

impl Router {
    /// Builds a table from `(service, normalized keywords)` in priority order.
    pub fn new(services: Vec<(String, Vec<String>)>, default: String) -> Self {
        Self { services, default }
    }

    fn known(&self, name: &str) -> bool {
        self.services.iter().any(|(s, _)| s == name)
    }

    /// The service for `msg`, given the service the conversation is currently with.
    pub fn route(&self, msg: &InboundMessage, current: Option<&str>) -> (String, RouteReason) {
        if let Some(id) = &msg.reply_id {
            let service = id.split(':').next().unwrap_or_default();
            if self.known(service) {
                return (service.to_owned(), RouteReason::ReplyId);
            }
        }
        let mut haystack = String::from(" ");
        for part in [msg.text.as_deref(), msg.reply_id.as_deref()]
            .into_iter()
            .flatten()
        {
            haystack.push_str(&normalize(part));
            haystack.push(' ');
        }
        for (service, keywords) in &self.services {
            if keywords
                .iter()
                .any(|k| haystack.contains(&format!(" {k} ")))
            {
                return (service.clone(), RouteReason::Keyword);
            }
        }
        if let Some(c) = current.filter(|c| self.known(c)) {
            return (c.to_owned(), RouteReason::Conversation);
        }
        (self.default.clone(), RouteReason::Default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seed() -> Router {
        let s = |n: &str, k: &[&str]| (n.to_owned(), k.iter().map(|x| normalize(x)).collect());
        Router::new(
            vec![
                s("jobs", &["jobs", "job"]),
                s("property", &["rent property", "property", "rent"]),
                s("mobility", &["book ride", "ride"]),
                s("marketplace", &["shop"]),
                s("ai-agent", &[]),
            ],
            "ai-agent".into(),
        )
    }

    fn msg(text: &str, reply_id: Option<&str>) -> InboundMessage {
        InboundMessage {
            message_id: "wamid.X".into(),
            from: "250788123456".into(),
            kind: "text".into(),
            text: Some(text.into()),
            reply_id: reply_id.map(Into::into),
            timestamp: None,
            phone_number_id: "1".into(),
            contact_name: None,
            correlation_id: String::new(),
        }
    }

    #[test]
    fn seed_keywords() {
        let r = seed();
        let cases = [
            ("Any JOBS today?", "jobs"),
            ("I want to rent property in Kicukiro", "property"),
            ("Book ride, please!", "mobility"),
            ("shop", "marketplace"),
            ("hello there", "ai-agent"),
            ("jobsearch", "ai-agent"), // whole words only
        ];
        for (text, want) in cases {
            assert_eq!(r.route(&msg(text, None), None).0, want, "{text}");
        }
    }

    #[test]
    fn reply_id_then_keyword_then_conversation_then_default() {
        let r = seed();
        assert_eq!(
            r.route(&msg("Yes", Some("mobility:confirm")), Some("jobs")),
            ("mobility".into(), RouteReason::ReplyId)
        );
        assert_eq!(
            r.route(&msg("shop now", Some("unknown:1")), Some("jobs")),
            ("marketplace".into(), RouteReason::Keyword)
        );
        assert_eq!(
            r.route(&msg("tomorrow at 9", None), Some("jobs")),
            ("jobs".into(), RouteReason::Conversation)
        );
        assert_eq!(
            r.route(&msg("tomorrow at 9", None), Some("gone")),
            ("ai-agent".into(), RouteReason::Default)
        );
    }

    proptest! {
        #[test]
        fn normalize_is_idempotent(s in "\\PC{0,64}") {
            let once = normalize(&s);
            prop_assert_eq!(normalize(&once), once.clone());
            prop_assert!(!once.starts_with(' ') && !once.ends_with(' ') && !once.contains("  "));
        }

        #[test]
        fn route_always_names_a_configured_service(text in "\\PC{0,64}", id in proptest::option::of("\\PC{0,16}"), cur in proptest::option::of("[a-z-]{0,12}")) {
            let r = seed();
            let (s, _) = r.route(&msg(&text, id.as_deref()), cur.as_deref());
            prop_assert!(r.known(&s));
        }
    }
}
