//! Phone-number masking for logs: `250788123456` → `+250788***456`.
//!
//! Logs show enough to tell users apart in an incident (country + operator prefix, last three
//! digits) and not enough to dial anyone. Anything that is not a plausible phone number is
//! masked whole: a log line must never be the place a number leaks because it was odd-shaped.

use std::fmt;

/// Masks a WhatsApp id / phone number. Numbers of 10 or more digits keep their first six and
/// last three digits; shorter ones keep at most their first two and last two, hiding at least
/// half; anything else becomes `***`.
pub fn mask_phone(raw: &str) -> String {
    let digits = raw.trim().strip_prefix('+').unwrap_or(raw.trim());
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return "***".to_owned();
    }
    let n = digits.len();
    let (head, tail) = if n >= 10 {
        (6, 3)
    } else if n >= 8 {
        (2, 2)
    } else {
        (0, 0)
    };
    if head + tail == 0 {
        return "***".to_owned();
    }
    format!("+{}***{}", &digits[..head], &digits[n - tail..])
}

/// A `Display` wrapper that masks when formatted, for use in `tracing` fields:
/// `tracing::info!(from = %Masked(&msg.from))`.
#[derive(Debug, Clone, Copy)]
pub struct Masked<'a>(pub &'a str);

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask_phone(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seed_format() {
        assert_eq!(mask_phone("250788123456"), "+250788***456");
        assert_eq!(mask_phone("+250788123456"), "+250788***456");
        assert_eq!(mask_phone("16505551234"), "+165055***234");
        assert_eq!(mask_phone("12345678"), "+12***78");
        assert_eq!(mask_phone("1234567"), "***");
        assert_eq!(mask_phone("PHONE_NUMBER"), "***");
        assert_eq!(mask_phone(""), "***");
        assert_eq!(Masked("250788123456").to_string(), "+250788***456");
    }

    proptest! {
        #[test]
        fn a_masked_number_never_shows_its_hidden_digits(n in "[0-9]{1,15}") {
            let m = mask_phone(&n);
            prop_assert!(m.contains("***"));
            prop_assert_ne!(&m, &n);
            let shown = m.bytes().filter(u8::is_ascii_digit).count();
            // at least one digit hidden; for short numbers at least half
            prop_assert!(shown < n.len());
            if n.len() < 10 { prop_assert!(shown * 2 <= n.len()); }
            // what is shown is the number's own prefix and suffix
            if let Some((head, tail)) = m.trim_start_matches('+').split_once("***") {
                prop_assert!(n.starts_with(head));
                prop_assert!(n.ends_with(tail));
            }
        }

        #[test]
        fn anything_else_never_panics_and_never_echoes(s in "\\PC{0,32}") {
            let m = mask_phone(&s);
            if !s.trim().trim_start_matches('+').bytes().all(|b| b.is_ascii_digit()) {
                prop_assert_eq!(m, "***");
            }
        }
    }
}
