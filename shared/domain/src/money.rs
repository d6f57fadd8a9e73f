//! Money: a decimal amount with its ISO 4217 currency. Never a float.

use crate::customer::Language;
use crate::locale::group_digits;
pub use iso_currency::Currency;
use rust_decimal::{Decimal, RoundingStrategy};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    pub amount: Decimal,
    pub currency: Currency,
}

impl Money {
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
    use std::str::FromStr;

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
}
