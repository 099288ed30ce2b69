//! Amounts, currencies and account ids: the checks every request goes through before it
//! reaches the ledger.
//!
//! Amounts are `i64` minor units (cents, or whole francs for RWF): integers, so no rounding
//! ever happens, and signed so that an overflow or a negative value is a checkable error
//! rather than a wrap-around.

use serde::{Deserialize, Serialize};

/// A request field that failed its check; the HTTP layer answers 400 with the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct Invalid {
    /// The JSON field.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

const fn invalid(field: &'static str, problem: &'static str) -> Invalid {
    Invalid { field, problem }
}

/// A positive amount in minor units.
pub fn amount(value: i64) -> Result<i64, Invalid> {
    if value <= 0 {
        return Err(invalid(
            "amount",
            "must be a positive whole number of minor units",
        ));
    }
    Ok(value)
}

/// An ISO 4217-shaped currency code: three upper-case ASCII letters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Currency(String);

impl Currency {
    /// Checks `code`.
    pub fn parse(code: &str) -> Result<Self, Invalid> {
        if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Currency(code.to_owned()))
        } else {
            Err(invalid(
                "currency",
                "must be three upper-case letters, such as \"RWF\"",
            ))
        }
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The longest account id.
pub const MAX_ACCOUNT_ID_LEN: usize = 64;

/// An account id: 1 to 64 of `[A-Za-z0-9_-]`.
pub fn account_id(field: &'static str, id: &str) -> Result<String, Invalid> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ACCOUNT_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(id.to_owned())
    } else {
        Err(invalid(field, "must be 1 to 64 of A-Z a-z 0-9 _ -"))
    }
}

/// An MSISDN: 8 to 15 digits, an optional leading `+`.
pub fn msisdn(value: &str) -> Result<String, Invalid> {
    let digits = value.strip_prefix('+').unwrap_or(value);
    if (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(digits.to_owned())
    } else {
        Err(invalid("msisdn", "must be 8 to 15 digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_must_be_positive() {
        assert_eq!(amount(1), Ok(1));
        assert!(amount(0).is_err());
        assert!(amount(-5).is_err());
        assert_eq!(amount(i64::MAX), Ok(i64::MAX));
    }

    #[test]
    fn currencies_ids_and_msisdns() {
        assert!(Currency::parse("RWF").is_ok());
        for bad in ["rwf", "RW", "RWFF", "R1F", ""] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
        assert!(account_id("id", "acc_a-1").is_ok());
        assert!(account_id("id", "").is_err());
        assert!(account_id("id", "a b").is_err());
        assert!(account_id("id", &"a".repeat(65)).is_err());
        assert_eq!(msisdn("+250788123456").as_deref(), Ok("250788123456"));
        assert!(msisdn("25078x").is_err());
    }
}
