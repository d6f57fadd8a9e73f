//! Money: a decimal amount with its ISO 4217 currency. Never a float.

use crate::customer::Language;
use crate::locale::group_digits;
pub use iso_currency::Currency;
use rust_decimal::{Decimal, RoundingStrategy};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    pub amount: Decimal,
    pub currency: Currency,
}

/// Integer digits an amount may have: the database keeps amounts as `numeric(20, 4)`
/// (migrations), so 16 digits before the point and 4 after.
pub const MAX_INTEGER_DIGITS: usize = 16;
/// Digits after the point the database keeps; the currency may allow fewer (2 for EUR).
pub const MAX_FRACTION_DIGITS: usize = 4;

impl Money {
    /// The one parser of amounts written in inbound messages and commands: a plain decimal
    /// string, `.` as the point (`"1500"`, `"1500.00"`, `"-3"` for the caller to refuse as not
    /// positive), within what the database can hold. No exponent (`"1e3"`), no sign `+`, no
    /// spaces or separators inside, no point without digits on both sides. Says why not.
    pub fn parse_amount(text: &str) -> Result<Decimal, String> {
        let example = "a decimal number such as \"1500.00\" (digits, \".\" as the point)";
        let digits = text.strip_prefix('-').unwrap_or(text);
        let (integer, fraction) = match digits.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (digits, None),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(integer) || !fraction.is_none_or(all_digits) {
            return Err(format!("{text:?} is not {example}"));
        }
        let significant = integer.trim_start_matches('0').len();
        if significant > MAX_INTEGER_DIGITS {
            return Err(format!(
                "{text:?} has {significant} digits before the point; at most {MAX_INTEGER_DIGITS} are accepted"
            ));
        }
        if let Some(fraction) = fraction.filter(|f| f.len() > MAX_FRACTION_DIGITS) {
            return Err(format!(
                "{text:?} has {} digits after the point; at most {MAX_FRACTION_DIGITS} are accepted",
                fraction.len()
            ));
        }
        Decimal::from_str(text).map_err(|e| format!("{text:?} is not {example} ({e})"))
    }

    pub fn new(amount: Decimal, currency: Currency) -> Self {
        Self { amount, currency }
    }

    /// Parses an ISO 4217 code such as `EUR`.
    pub fn parse_currency(code: &str) -> Result<Currency, String> {
        Currency::from_code(code)
            .ok_or_else(|| format!("unknown currency {code:?} (expected an ISO 4217 code such as EUR)"))
    }

    /// Digits after the decimal point for this currency (2 for EUR, 0 for JPY).
    pub fn minor_digits(&self) -> u32 {
        u32::from(self.currency.exponent().unwrap_or(2))
    }

    /// Rounded half-even to the currency's minor unit, as the law and banks expect.
    pub fn rounded(&self) -> Money {
        let amount = self
            .amount
            .round_dp_with_strategy(self.minor_digits(), RoundingStrategy::MidpointNearestEven);
        Money {
            amount,
            currency: self.currency,
        }
    }

    /// `1 500,00 €` in French, `€1,500.00` in English.
    pub fn format(&self, language: Language) -> String {
        let rounded = self.rounded();
        let mut plain = rounded.amount.to_string();
        let digits = self.minor_digits() as usize;
        if digits > 0 {
            let frac_len = plain.split_once('.').map(|(_, f)| f.len()).unwrap_or(0);
            if frac_len == 0 {
                plain.push('.');
            }
            for _ in frac_len..digits {
                plain.push('0');
            }
        }
        let symbol = symbol(self.currency);
        match language {
            // French typography: narrow no-break space between groups and before the symbol.
            Language::Fr => format!(
                "{}\u{a0}{}",
                group_digits(&plain, "\u{202f}", ","),
                symbol.unwrap_or(self.currency.code())
            ),
            Language::En => match symbol {
                Some(s) => format!("{s}{}", group_digits(&plain, ",", ".")),
                None => format!("{} {}", self.currency.code(), group_digits(&plain, ",", ".")),
            },
        }
    }
}

fn symbol(currency: Currency) -> Option<&'static str> {
    match currency {
        Currency::EUR => Some("€"),
        Currency::USD => Some("$"),
        Currency::GBP => Some("£"),
        Currency::JPY => Some("¥"),
        _ => None,
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.rounded().amount, self.currency.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur(s: &str) -> Money {
        Money::new(Decimal::from_str(s).unwrap_or_default(), Currency::EUR)
    }

    #[test]
    fn french_amounts_use_comma_and_narrow_spaces() {
        assert_eq!(eur("1500").format(Language::Fr), "1\u{202f}500,00\u{a0}€");
        assert_eq!(eur("0.5").format(Language::Fr), "0,50\u{a0}€");
    }

    #[test]
    fn english_amounts_put_the_symbol_first() {
        assert_eq!(eur("1500").format(Language::En), "€1,500.00");
        let chf = Money::new(Decimal::from(12_345), Currency::CHF);
        assert_eq!(chf.format(Language::En), "CHF 12,345.00");
    }

    #[test]
    fn rounding_is_half_even_to_the_minor_unit() {
        assert_eq!(eur("2.345").rounded().amount.to_string(), "2.34");
        assert_eq!(eur("2.355").rounded().amount.to_string(), "2.36");
        let yen = Money::new(Decimal::from_str("1234.5").unwrap_or_default(), Currency::JPY);
        assert_eq!(yen.format(Language::En), "¥1,234");
    }

    #[test]
    fn amounts_are_plain_decimal_strings_within_the_columns_range() {
        for good in ["1500", "1500.00", "0.5", "007", "9999999999999999.9999", "-3"] {
            assert_eq!(
                Money::parse_amount(good).map(|d| d.to_string()),
                Ok(Decimal::from_str(good).unwrap_or_default().to_string()),
                "{good}"
            );
        }
        for bad in [
            "1e3", "1E3", "+5", "1 500", "1,500.00", "1500.", ".5", "", "-", "0x10", "1_000", "١٥", "12.3.4",
            "NaN", "inf",
        ] {
            let refused = Money::parse_amount(bad);
            assert!(
                refused
                    .as_ref()
                    .is_err_and(|e| e.contains("is not a decimal number")),
                "{bad}: {refused:?}"
            );
        }
        let too_big = Money::parse_amount("12345678901234567");
        assert!(
            too_big
                .as_ref()
                .is_err_and(|e| e.contains("17 digits before the point")),
            "{too_big:?}"
        );
        let too_fine = Money::parse_amount("1.00001");
        assert!(
            too_fine.as_ref().is_err_and(|e| e.contains("5 digits after")),
            "{too_fine:?}"
        );
    }
}
