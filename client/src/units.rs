//! One unit convention: people write and read tokens with up to nine decimals ("1.5"); JSON and
//! the ledger carry base units (10^-9 tokens, `deai_protocol::params::TOKEN` per token) as
//! decimal strings.

use deai_protocol::params::TOKEN;

/// Decimal places of one token.
pub const TOKEN_DECIMALS: usize = 9;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{text:?} is not an amount of tokens: {why} (write tokens with up to 9 decimals, e.g. 12 or 0.5)")]
pub struct AmountError {
    pub text: String,
    pub why: &'static str,
}

/// Tokens as people write them ("12", "0.5", "1_000") to base units.
pub fn parse_tokens(text: &str) -> Result<u128, AmountError> {
    let bad = |why| AmountError { text: text.to_string(), why };
    let clean: String = text.trim().chars().filter(|c| *c != '_').collect();
    let (whole, fraction) = clean.split_once('.').unwrap_or((&clean, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(bad("empty"));
    }
    if !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad("only digits and one decimal point"));
    }
    if fraction.len() > TOKEN_DECIMALS {
        return Err(bad("more than 9 decimals"));
    }
    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad("too large"))? };
    let fraction: u128 =
        if fraction.is_empty() { 0 } else { format!("{fraction:0<9}").parse().map_err(|_| bad("too large"))? };
    whole.checked_mul(TOKEN).and_then(|w| w.checked_add(fraction)).ok_or_else(|| bad("too large"))
}

/// Base units as tokens for people: "1.5", "12", "0.000000001".
pub fn format_tokens(base_units: u128) -> String {
    let whole = base_units / TOKEN;
    let fraction = base_units % TOKEN;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:09}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// A decimal string of base units, as the API writes amounts, for people.
pub fn format_base_units(text: &str) -> String {
    text.parse::<u128>().map(format_tokens).unwrap_or_else(|_| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_through_base_units() {
        assert_eq!(parse_tokens("12").unwrap(), 12 * TOKEN);
        assert_eq!(parse_tokens("0.5").unwrap(), TOKEN / 2);
        assert_eq!(parse_tokens(".000000001").unwrap(), 1);
        assert_eq!(parse_tokens("1_000").unwrap(), 1_000 * TOKEN);
        assert_eq!(format_tokens(TOKEN / 2), "0.5");
        assert_eq!(format_tokens(12 * TOKEN), "12");
        assert_eq!(format_tokens(1), "0.000000001");
        for text in "0.25 7 123.456789".split(' ') {
            assert_eq!(format_tokens(parse_tokens(text).unwrap()), text);
        }
    }

    #[test]
    fn what_is_no_amount_is_refused_with_the_reason() {
        assert_eq!(parse_tokens("").unwrap_err().why, "empty");
        assert_eq!(parse_tokens("-1").unwrap_err().why, "only digits and one decimal point");
        assert_eq!(parse_tokens("1.2.3").unwrap_err().why, "only digits and one decimal point");
        assert_eq!(parse_tokens("0.0000000001").unwrap_err().why, "more than 9 decimals");
        assert_eq!(parse_tokens(&"9".repeat(40)).unwrap_err().why, "too large");
    }
}
