//! Key syntax and validation.

use std::fmt;

use crate::error::{ConfigError, KeyError};

/// The syntax an idempotency key must follow. Default: 16–255 visible ASCII characters
/// (`!`..=`~`), the seed system's rule, long enough to hold a UUID and short enough to index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRules {
    min_len: usize,
    max_len: usize,
}

impl Default for KeyRules {
    fn default() -> Self {
        KeyRules {
            min_len: 16,
            max_len: 255,
        }
    }
}

impl KeyRules {
    /// Rules with other length bounds (characters are always visible ASCII, so keys are safe
    /// in headers, logs and Redis key names). Fails unless `1 <= min <= max`.
    pub fn new(min_len: usize, max_len: usize) -> Result<Self, ConfigError> {
        if min_len == 0 || min_len > max_len {
            return Err(ConfigError::KeyLengthBounds {
                min: min_len,
                max: max_len,
            });
        }
        Ok(KeyRules { min_len, max_len })
    }

    /// Minimum length in characters.
    pub fn min_len(&self) -> usize {
        self.min_len
    }

    /// Maximum length in characters.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Validate `raw` into an [`IdempotencyKey`].
    pub fn parse(&self, raw: &str) -> Result<IdempotencyKey, KeyError> {
        // Check characters first: a non-ASCII byte would make `len()` count bytes, not chars.
        if let Some(position) = raw.bytes().position(|b| !(0x21..=0x7e).contains(&b)) {
            return Err(KeyError::InvalidCharacter { position });
        }
        let len = raw.len();
        if len < self.min_len {
            return Err(KeyError::TooShort {
                len,
                min: self.min_len,
            });
        }
        if len > self.max_len {
            return Err(KeyError::TooLong {
                len,
                max: self.max_len,
            });
        }
        Ok(IdempotencyKey(raw.to_owned()))
    }

    /// Validate an `Idempotency-Key` header value. The IETF draft defines the field as a
    /// Structured Field string (`"8e03978e-40d5-43e8-bc93-6894a57f9324"`): a value starting
    /// with `"` is unquoted first (RFC 8941 §4.2.5: `\"` and `\\` escapes) and a malformed
    /// one is [`KeyError::MalformedString`]. Any other value is taken as the key itself, as
    /// Stripe's clients send it. Parameters after the string (the draft defines none) are
    /// refused rather than silently dropped.
    pub fn parse_header(&self, raw: &[u8]) -> Result<IdempotencyKey, KeyError> {
        // HTTP already strips the field's surrounding whitespace; RFC 8941 parsers drop
        // leading and trailing spaces too.
        let raw = raw.trim_ascii();
        match raw.strip_prefix(b"\"") {
            Some(quoted) => self.parse(&unquote(quoted)?),
            None => match std::str::from_utf8(raw) {
                Ok(s) => self.parse(s),
                Err(e) => Err(KeyError::InvalidCharacter {
                    position: e.valid_up_to(),
                }),
            },
        }
    }
}

/// The content of a Structured Field string whose opening quote is already consumed.
fn unquote(rest: &[u8]) -> Result<String, KeyError> {
    let malformed = |reason| Err(KeyError::MalformedString { reason });
    let mut out = String::with_capacity(rest.len());
    let mut bytes = rest.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => match bytes.next() {
                Some(&e @ (b'"' | b'\\')) => out.push(char::from(e)),
                Some(_) => return malformed("only \\\" and \\\\ may be escaped"),
                None => return malformed("unterminated string"),
            },
            b'"' => {
                return if bytes.as_slice().is_empty() {
                    Ok(out)
                } else {
                    malformed("unexpected characters after the closing quote")
                };
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => return malformed("character outside %x20-7E"),
        }
    }
    malformed("unterminated string")
}

/// A validated idempotency key (or message id).
///
/// Its `Debug` and `Display` show only a truncated form (`"abcd…(36)"`), so that logging a key
/// never leaks a full client secret-ish token into logs; use [`IdempotencyKey::as_str`] for
/// the whole value.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Validate with the default [`KeyRules`].
    pub fn parse(raw: &str) -> Result<Self, KeyError> {
        KeyRules::default().parse(raw)
    }

    /// The full key.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The truncated form used in logs.
    pub fn redacted(&self) -> String {
        let head: String = self.0.chars().take(4).collect();
        format!("{head}…({})", self.0.len())
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({})", self.redacted())
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_bounds() {
        assert!(IdempotencyKey::parse("0123456789abcdef").is_ok());
        assert_eq!(
            IdempotencyKey::parse("short"),
            Err(KeyError::TooShort { len: 5, min: 16 })
        );
        assert_eq!(
            IdempotencyKey::parse(&"x".repeat(256)),
            Err(KeyError::TooLong { len: 256, max: 255 })
        );
        assert_eq!(
            IdempotencyKey::parse("0123456789 abcdef"),
            Err(KeyError::InvalidCharacter { position: 10 })
        );
        assert_eq!(
            IdempotencyKey::parse("0123456789abcdé"),
            Err(KeyError::InvalidCharacter { position: 14 })
        );
    }

    #[test]
    fn header_values_plain_or_structured_string() {
        let rules = KeyRules::default();
        let key = "8e03978e-40d5-43e8-bc93-6894a57f9324";
        let parse = |raw: &str| rules.parse_header(raw.as_bytes());
        assert_eq!(parse(key).unwrap().as_str(), key);
        assert_eq!(parse(&format!("\"{key}\"")).unwrap().as_str(), key);
        assert_eq!(parse(&format!("  \"{key}\" ")).unwrap().as_str(), key);
        // Escapes unquote to the character itself.
        assert_eq!(
            parse(r#""abc\"def\\0123456789""#).unwrap().as_str(),
            r#"abc"def\0123456789"#
        );
        let malformed = |raw: &str| matches!(parse(raw), Err(KeyError::MalformedString { .. }));
        assert!(malformed(&format!("\"{key}")), "unterminated");
        assert!(malformed(&format!("\"{key}\\")), "dangling escape");
        assert!(malformed(&format!("\"{key}\\n\"")), "bad escape");
        assert!(malformed(&format!("\"{key}\";p=1")), "parameters");
        assert!(malformed(&format!("\"{key}\", \"{key}\"")), "a list");
        assert!(malformed("\"0123456789abcdefé\""), "non-ASCII");
        assert!(malformed("\"0123456789abcdef\t\""), "control character");
        // Unquoted, the key rules still apply (a space is legal in an sf-string, not a key).
        assert_eq!(
            parse("\"0123456789 abcdef\""),
            Err(KeyError::InvalidCharacter { position: 10 })
        );
        assert_eq!(
            parse("\"short\""),
            Err(KeyError::TooShort { len: 5, min: 16 })
        );
        assert!(matches!(
            rules.parse_header(b"0123456789abcdef\xff"),
            Err(KeyError::InvalidCharacter { position: 16 })
        ));
    }

    #[test]
    fn bad_bounds_rejected() {
        assert!(KeyRules::new(0, 10).is_err());
        assert!(KeyRules::new(11, 10).is_err());
        assert_eq!(KeyRules::new(1, 1).map(|r| r.max_len()), Ok(1));
    }

    #[test]
    fn debug_is_truncated() {
        let key = IdempotencyKey::parse("secret-token-0123456789").unwrap();
        assert_eq!(format!("{key:?}"), "IdempotencyKey(secr…(23))");
        assert!(!format!("{key}").contains("0123456789"));
    }

    proptest! {
        #[test]
        fn visible_ascii_within_bounds_is_accepted(s in "[!-~]{16,255}") {
            let key = IdempotencyKey::parse(&s).unwrap();
            prop_assert_eq!(key.as_str(), s.as_str());
        }

        #[test]
        fn quoting_round_trips(s in "[!-~]{16,255}") {
            let quoted = format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
            let key = KeyRules::default().parse_header(quoted.as_bytes()).unwrap();
            prop_assert_eq!(key.as_str(), s.as_str());
        }

        #[test]
        fn header_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = KeyRules::default().parse_header(&bytes);
        }

        #[test]
        fn anything_else_is_rejected_without_panic(s in any::<String>(), min in 1usize..40, extra in 0usize..40) {
            let rules = KeyRules::new(min, min + extra).unwrap();
            let valid = s.bytes().all(|b| (0x21..=0x7e).contains(&b))
                && (min..=min + extra).contains(&s.len());
            prop_assert_eq!(rules.parse(&s).is_ok(), valid);
        }
    }
}
