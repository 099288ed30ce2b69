//! Real-shaped WhatsApp Cloud API webhook payloads: text, interactive replies, batches and
//! status updates, each message with a unique `wamid`, serialized the way Meta sends them
//! (compact, non-ASCII escaped as `\uXXXX`) and signed.

use std::fmt;
use std::io;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::Error;
use crate::signature::sign;

/// What a payload carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadKind {
    /// One text message.
    Text,
    /// One interactive reply (button or list).
    Interactive,
    /// Several messages (text and interactive, several senders) over two changes.
    Batch,
    /// Status updates (sent/delivered/read/failed) for outbound messages: nothing to deliver.
    Status,
}

/// Relative weights of the payload kinds, parsed from `text=50,interactive=20,batch=20,status=10`.
///
/// Kinds left out weigh 0; at least one weight must be positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Mix {
    /// Weight of [`PayloadKind::Text`].
    pub text: u32,
    /// Weight of [`PayloadKind::Interactive`].
    pub interactive: u32,
    /// Weight of [`PayloadKind::Batch`].
    pub batch: u32,
    /// Weight of [`PayloadKind::Status`].
    pub status: u32,
}

impl Default for Mix {
    /// `text=50,interactive=20,batch=20,status=10`.
    fn default() -> Self {
        Mix {
            text: 50,
            interactive: 20,
            batch: 20,
            status: 10,
        }
    }
}

impl Mix {
    fn total(&self) -> u64 {
        u64::from(self.text)
            + u64::from(self.interactive)
            + u64::from(self.batch)
            + u64::from(self.status)
    }

    /// The kind for a uniform draw `r` in `0..total`.
    fn pick(&self, mut r: u64) -> PayloadKind {
        for (weight, kind) in [
            (self.text, PayloadKind::Text),
            (self.interactive, PayloadKind::Interactive),
            (self.batch, PayloadKind::Batch),
        ] {
            if r < u64::from(weight) {
                return kind;
            }
            r -= u64::from(weight);
        }
        PayloadKind::Status
    }
}

impl FromStr for Mix {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let mut mix = Mix {
            text: 0,
            interactive: 0,
            batch: 0,
            status: 0,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| Error::config("mix", format!("`{part}` is not kind=weight")))?;
            let weight: u32 = weight.trim().parse().map_err(|_| {
                Error::config("mix", format!("weight `{weight}` is not a whole number"))
            })?;
            let slot = match name.trim() {
                "text" => &mut mix.text,
                "interactive" => &mut mix.interactive,
                "batch" => &mut mix.batch,
                "status" => &mut mix.status,
                other => {
                    return Err(Error::config(
                        "mix",
                        format!("unknown kind `{other}` (text, interactive, batch, status)"),
                    ));
                }
            };
            *slot = weight;
        }
        if mix.total() == 0 {
            return Err(Error::config("mix", "at least one weight must be positive"));
        }
        Ok(mix)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "text={},interactive={},batch={},status={}",
            self.text, self.interactive, self.batch, self.status
        )
    }
}

/// One POST body, ready to send: the exact bytes, their signature and the message ids inside.
#[derive(Debug, Clone)]
pub struct Payload {
    /// What it carries.
    pub kind: PayloadKind,
    /// The raw body (what is signed).
    pub body: Bytes,
    /// The `X-Hub-Signature-256` value.
    pub signature: String,
    /// The `wamid` of every message in it (empty for status updates).
    pub message_ids: Vec<String>,
}

/// Settings of a [`PayloadGenerator`].
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// The app secret payloads are signed with.
    pub app_secret: String,
    /// How many distinct senders (`from`) to spread messages over (default 1000).
    pub senders: u32,
    /// Messages per batch payload (default 5, at most 1000).
    pub batch_size: usize,
    /// Kinds of payload and their weights.
    pub mix: Mix,
    /// `metadata.phone_number_id` (the business number's id; replies go to it).
    pub phone_number_id: String,
    /// Seed of the random choices (kinds, texts, senders); ids stay unique whatever the seed.
    pub seed: u64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            app_secret: "loadgen-app-secret".into(),
            senders: 1000,
            batch_size: 5,
            mix: Mix::default(),
            phone_number_id: "106540352242922".into(),
            seed: 0x5eed,
        }
    }
}

impl GeneratorConfig {
    /// Checks the ranges; the error names the option.
    pub fn validate(&self) -> Result<(), Error> {
        if self.senders == 0 {
            return Err(Error::config("senders", "must be at least 1"));
        }
        if !(1..=1000).contains(&self.batch_size) {
            return Err(Error::config(
                "batch-size",
                "must be 1..=1000 (Meta sends at most 1000 updates)",
            ));
        }
        if self.phone_number_id.is_empty()
            || !self.phone_number_id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(Error::config("phone-number-id", "must be digits"));
        }
        Ok(())
    }
}

/// Texts that hit each route of the reference webhook's keyword routing, plus non-ASCII ones
/// (Meta escapes them as `\uXXXX`, which signatures must survive) and free text for the AI agent.
const TEXTS: &[&str] = &[
    "Hello, I am looking for jobs in Kigali",
    "any job for a driver?",
    "I want to rent property near Remera",
    "book ride to the airport please",
    "shop: do you sell phones?",
    "Bonjour, ça va? Je cherche un appartement 🏠",
    "Muraho! Amakuru?",
    "what can you do for me?",
    "Café crème ☕ and a taxi",
];

const BUTTONS: &[(&str, &str)] = &[
    ("jobs", "Find jobs"),
    ("rent_property", "Rent property"),
    ("book_ride", "Book ride"),
    ("shop", "Shop"),
    ("talk_to_agent", "Talk to an agent"),
];

const NAMES: &[&str] = &["Aline", "Jean-Paul", "Éric", "Grace", "Olivier", "Zoë"];

/// Makes unique, signed, real-shaped payloads.
///
/// Every message id is `wamid.` + base64 of (a per-generator random tag, a sequence number,
/// the sender), so ids never repeat within a run nor across runs against a persistent store.
#[derive(Debug)]
pub struct PayloadGenerator {
    config: GeneratorConfig,
    run_tag: u64,
    seq: u64,
    rng: SmallRng,
}

impl PayloadGenerator {
    /// A generator; fails when the config is out of range.
    pub fn new(config: GeneratorConfig) -> Result<Self, Error> {
        config.validate()?;
        let rng = SmallRng::seed_from_u64(config.seed);
        Ok(PayloadGenerator {
            config,
            run_tag: rand::random(),
            seq: 0,
            rng,
        })
    }

    /// The next payload, its kind drawn from the mix.
    pub fn next_payload(&mut self) -> Payload {
        let r = self.rng.random_range(0..self.config.mix.total());
        let kind = self.config.mix.pick(r);
        self.generate(kind)
    }

    /// A payload of the given kind.
    pub fn generate(&mut self, kind: PayloadKind) -> Payload {
        let mut ids = Vec::new();
        let changes = match kind {
            PayloadKind::Text => {
                let from = self.sender();
                let m = self.text_message(&from, &mut ids);
                vec![self.change(vec![(from, m)], Vec::new())]
            }
            PayloadKind::Interactive => {
                let from = self.sender();
                let m = self.interactive_message(&from, &mut ids);
                vec![self.change(vec![(from, m)], Vec::new())]
            }
            PayloadKind::Batch => {
                // Real batches mix changes and messages; split across two changes when large enough.
                let n = self.config.batch_size;
                let first = if n >= 4 { n / 2 } else { n };
                let mut changes = Vec::new();
                let mut made = 0;
                for size in [first, n - first] {
                    if size == 0 {
                        continue;
                    }
                    let mut msgs = Vec::with_capacity(size);
                    for _ in 0..size {
                        let from = self.sender();
                        let m = if made % 3 == 2 {
                            self.interactive_message(&from, &mut ids)
                        } else {
                            self.text_message(&from, &mut ids)
                        };
                        made += 1;
                        msgs.push((from, m));
                    }
                    changes.push(self.change(msgs, Vec::new()));
                }
                changes
            }
            PayloadKind::Status => {
                let count = self.rng.random_range(1..=3);
                let statuses = (0..count).map(|_| self.status()).collect();
                vec![self.change(Vec::new(), statuses)]
            }
        };
        let doc = json!({
            "object": "whatsapp_business_account",
            "entry": [{ "id": "102290129340398", "changes": changes }],
        });
        let body = Bytes::from(to_meta_json(&doc));
        let signature = sign(self.config.app_secret.as_bytes(), &body);
        Payload {
            kind,
            body,
            signature,
            message_ids: ids,
        }
    }

    fn sender(&mut self) -> String {
        let n = self.rng.random_range(0..self.config.senders);
        format!("250788{n:06}")
    }

    fn next_id(&mut self, from: &str) -> String {
        self.seq += 1;
        let raw = format!("{from}:{:016x}:{:012}", self.run_tag, self.seq);
        format!("wamid.HBgM{}", base64(raw.as_bytes()))
    }

    fn timestamp() -> String {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .to_string()
    }

    fn text_message(&mut self, from: &str, ids: &mut Vec<String>) -> Value {
        let id = self.next_id(from);
        ids.push(id.clone());
        let body = TEXTS[self.rng.random_range(0..TEXTS.len())];
        json!({
            "from": from,
            "id": id,
            "timestamp": Self::timestamp(),
            "text": { "body": body },
            "type": "text",
        })
    }

    fn interactive_message(&mut self, from: &str, ids: &mut Vec<String>) -> Value {
        let id = self.next_id(from);
        ids.push(id.clone());
        let (button_id, title) = BUTTONS[self.rng.random_range(0..BUTTONS.len())];
        let interactive = if self.rng.random_bool(0.5) {
            json!({ "type": "button_reply", "button_reply": { "id": button_id, "title": title } })
        } else {
            json!({
                "type": "list_reply",
                "list_reply": { "id": button_id, "title": title, "description": "Choose this option" },
            })
        };
        // A reply refers to the business message it answers.
        let context_id = format!("wamid.HBgMout{}", base64(&self.rng.random::<[u8; 12]>()));
        json!({
            "context": { "from": self.config.phone_number_id, "id": context_id },
            "from": from,
            "id": id,
            "timestamp": Self::timestamp(),
            "interactive": interactive,
            "type": "interactive",
        })
    }

    fn status(&mut self) -> Value {
        let recipient = self.sender();
        let id = format!("wamid.HBgMout{}", base64(&self.rng.random::<[u8; 18]>()));
        let status = ["sent", "delivered", "read", "failed"][self.rng.random_range(0..4)];
        let mut v = json!({
            "id": id,
            "status": status,
            "timestamp": Self::timestamp(),
            "recipient_id": recipient,
        });
        if status == "failed" {
            v["errors"] = json!([{
                "code": 131026,
                "title": "Message undeliverable",
                "message": "Message undeliverable",
                "error_data": { "details": "Message Undeliverable." },
            }]);
        } else {
            v["conversation"] = json!({
                "id": hex::encode(self.rng.random::<[u8; 15]>()),
                "origin": { "type": "service" },
            });
            v["pricing"] =
                json!({ "billable": true, "pricing_model": "CBP", "category": "service" });
        }
        v
    }

    fn change(&mut self, messages: Vec<(String, Value)>, statuses: Vec<Value>) -> Value {
        let mut value = json!({
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": "15550783881",
                "phone_number_id": self.config.phone_number_id,
            },
        });
        if !messages.is_empty() {
            let mut contacts: Vec<Value> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (from, _) in &messages {
                if seen.insert(from.clone()) {
                    let name = NAMES[self.rng.random_range(0..NAMES.len())];
                    contacts.push(json!({ "profile": { "name": name }, "wa_id": from }));
                }
            }
            value["contacts"] = Value::Array(contacts);
            value["messages"] = Value::Array(messages.into_iter().map(|(_, m)| m).collect());
        }
        if !statuses.is_empty() {
            value["statuses"] = Value::Array(statuses);
        }
        json!({ "value": value, "field": "messages" })
    }
}

/// Serializes compactly with every non-ASCII character escaped as `\uXXXX` (lowercase hex,
/// surrogate pairs beyond the BMP), as Meta's servers do.
pub fn to_meta_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, AsciiFormatter);
    serde::Serialize::serialize(value, &mut ser)
        .expect("serializing a Value into a Vec cannot fail");
    out
}

struct AsciiFormatter;

impl serde_json::ser::Formatter for AsciiFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, ch) in fragment.char_indices() {
            if ch.is_ascii() {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            start = i + ch.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// Standard base64 without padding (wamids are opaque base64-ish strings).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    use std::collections::HashSet;

    fn generator(mix: &str) -> PayloadGenerator {
        PayloadGenerator::new(GeneratorConfig {
            app_secret: "test-secret".into(),
            mix: mix.parse().unwrap(),
            ..GeneratorConfig::default()
        })
        .unwrap()
    }

    /// Walks a payload the way the webhook must: entry[].changes[].value.messages[].
    fn messages(doc: &Value) -> Vec<&Value> {
        doc["entry"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|e| e["changes"].as_array().unwrap())
            .filter_map(|c| c["value"]["messages"].as_array())
            .flatten()
            .collect()
    }

    #[test]
    fn every_kind_has_the_real_shape() {
        let mut g = generator("text=1");
        for kind in [
            PayloadKind::Text,
            PayloadKind::Interactive,
            PayloadKind::Batch,
            PayloadKind::Status,
        ] {
            let p = g.generate(kind);
            let doc: Value = serde_json::from_slice(&p.body).unwrap();
            assert_eq!(doc["object"], "whatsapp_business_account");
            for change in doc["entry"][0]["changes"].as_array().unwrap() {
                assert_eq!(change["field"], "messages");
                let v = &change["value"];
                assert_eq!(v["messaging_product"], "whatsapp");
                assert_eq!(v["metadata"]["phone_number_id"], "106540352242922");
            }
            let msgs = messages(&doc);
            let ids: Vec<&str> = msgs.iter().map(|m| m["id"].as_str().unwrap()).collect();
            assert_eq!(
                ids,
                p.message_ids.iter().map(String::as_str).collect::<Vec<_>>()
            );
            for m in &msgs {
                assert!(m["id"].as_str().unwrap().starts_with("wamid."));
                assert!(m["timestamp"].is_string(), "timestamps are strings");
                assert!(m["from"].as_str().unwrap().starts_with("250788"));
                match m["type"].as_str().unwrap() {
                    "text" => assert!(m["text"]["body"].is_string()),
                    "interactive" => {
                        let t = m["interactive"]["type"].as_str().unwrap();
                        assert!(m["interactive"][t]["id"].is_string());
                    }
                    other => panic!("unexpected type {other}"),
                }
            }
            match kind {
                PayloadKind::Text | PayloadKind::Interactive => assert_eq!(msgs.len(), 1),
                PayloadKind::Batch => {
                    assert_eq!(msgs.len(), 5);
                    assert_eq!(doc["entry"][0]["changes"].as_array().unwrap().len(), 2);
                }
                PayloadKind::Status => {
                    assert!(msgs.is_empty());
                    let st = doc["entry"][0]["changes"][0]["value"]["statuses"]
                        .as_array()
                        .unwrap();
                    assert!((1..=3).contains(&st.len()));
                    assert!(
                        st.iter()
                            .all(|s| s["recipient_id"].is_string() && s["status"].is_string())
                    );
                }
            }
        }
    }

    #[test]
    fn ids_are_unique_across_payloads_and_generators() {
        let mut seen = HashSet::new();
        for _ in 0..2 {
            let mut g = generator("text=1,interactive=1,batch=1");
            for _ in 0..3000 {
                for id in g.next_payload().message_ids {
                    assert!(seen.insert(id.clone()), "duplicate id {id}");
                }
            }
        }
        assert!(seen.len() >= 6000);
    }

    #[test]
    fn signature_verifies_with_an_independent_hmac() {
        let mut g = generator("text=1,interactive=1,batch=1,status=1");
        for _ in 0..50 {
            let p = g.next_payload();
            let hex_sig = p.signature.strip_prefix("sha256=").unwrap();
            let mut mac = Hmac::<Sha256>::new_from_slice(b"test-secret").unwrap();
            mac.update(&p.body);
            mac.verify_slice(&hex::decode(hex_sig).unwrap()).unwrap();
        }
    }

    #[test]
    fn non_ascii_is_escaped_like_meta() {
        let body = to_meta_json(&json!({ "t": "ça 🏠 é/\"" }));
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"t":"\u00e7a \ud83c\udfe0 \u00e9/\""}"#
        );
        let back: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(back["t"], "ça 🏠 é/\"");
        // The generator's bodies are pure ASCII.
        let mut g = generator("text=1");
        for _ in 0..100 {
            assert!(g.next_payload().body.is_ascii());
        }
    }

    #[test]
    fn mix_parsing_and_weights() {
        let m: Mix = "text=3, status=1".parse().unwrap();
        assert_eq!((m.text, m.interactive, m.batch, m.status), (3, 0, 0, 1));
        assert_eq!(m.to_string().parse::<Mix>().unwrap(), m);
        assert!("".parse::<Mix>().is_err());
        assert!("text=0".parse::<Mix>().is_err());
        assert!("video=1".parse::<Mix>().is_err());
        assert!("text".parse::<Mix>().is_err());
        assert!("text=-1".parse::<Mix>().is_err());
        let mut g = generator("status=1");
        assert!((0..20).all(|_| g.next_payload().kind == PayloadKind::Status));
        let kinds: HashSet<_> = {
            let mut g = generator("text=1,interactive=1,batch=1,status=1");
            (0..200).map(|_| g.next_payload().kind).collect()
        };
        assert_eq!(kinds.len(), 4);
    }

    #[test]
    fn config_is_validated() {
        let bad = |c: GeneratorConfig| PayloadGenerator::new(c).is_err();
        assert!(bad(GeneratorConfig {
            senders: 0,
            ..Default::default()
        }));
        assert!(bad(GeneratorConfig {
            batch_size: 0,
            ..Default::default()
        }));
        assert!(bad(GeneratorConfig {
            batch_size: 1001,
            ..Default::default()
        }));
        assert!(bad(GeneratorConfig {
            phone_number_id: "abc".into(),
            ..Default::default()
        }));
    }

    #[test]
    fn base64_known_values() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg");
        assert_eq!(base64(b"fo"), "Zm8");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    proptest::proptest! {
        #[test]
        fn mix_parser_never_panics(s in "[a-z=,0-9 ]{0,30}") {
            let _ = s.parse::<Mix>();
        }

        #[test]
        fn batches_hold_batch_size_unique_signed_messages(
            batch_size in 1usize..=60,
            senders in 1u32..50,
            seed in proptest::prelude::any::<u64>(),
        ) {
            let mut g = PayloadGenerator::new(GeneratorConfig {
                app_secret: "k".into(),
                batch_size,
                senders,
                seed,
                ..GeneratorConfig::default()
            })
            .unwrap();
            let p = g.generate(PayloadKind::Batch);
            let doc: Value = serde_json::from_slice(&p.body).unwrap();
            let msgs = messages(&doc);
            proptest::prop_assert_eq!(msgs.len(), batch_size);
            let ids: HashSet<&str> = msgs.iter().map(|m| m["id"].as_str().unwrap()).collect();
            proptest::prop_assert_eq!(ids.len(), batch_size);
            // Every sender of a change has its contact entry.
            for change in doc["entry"][0]["changes"].as_array().unwrap() {
                let v = &change["value"];
                let contacts: HashSet<&str> =
                    v["contacts"].as_array().unwrap().iter().map(|c| c["wa_id"].as_str().unwrap()).collect();
                for m in v["messages"].as_array().unwrap() {
                    proptest::prop_assert!(contacts.contains(m["from"].as_str().unwrap()));
                }
            }
            proptest::prop_assert_eq!(p.signature, sign(b"k", &p.body));
        }
    }

    #[test]
    fn a_full_batch_is_1000_messages() {
        let mut g = PayloadGenerator::new(GeneratorConfig {
            batch_size: 1000,
            ..GeneratorConfig::default()
        })
        .unwrap();
        let p = g.generate(PayloadKind::Batch);
        assert_eq!(p.message_ids.len(), 1000);
        let doc: Value = serde_json::from_slice(&p.body).unwrap();
        assert_eq!(messages(&doc).len(), 1000);
        // Far below Meta's 3 MB payload ceiling and the webhook's 4 MiB limit.
        assert!(p.body.len() < 3_000_000, "{} bytes", p.body.len());
    }
}
