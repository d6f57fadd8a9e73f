//! Dates and numbers as a reader of each language expects them (`30/06/2026`, `1 500,00 €`).

use crate::customer::Language;
use chrono::NaiveDate;

pub fn format_date(date: NaiveDate, language: Language) -> String {
    match language {
        Language::Fr => date.format("%d/%m/%Y").to_string(),
        Language::En => date.format("%-d %B %Y").to_string(),
    }
}

/// Groups the integer digits of a plain decimal string (`"1500.00"`) with `group` and
/// swaps the decimal point for `point`.
pub(crate) fn group_digits(plain: &str, group: &str, point: &str) -> String {
    let (sign, unsigned) = match plain.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", plain),
    };
    let (int_part, frac_part) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let digits: Vec<char> = int_part.chars().collect();
    let mut grouped = String::new();
    for (i, c) in digits.iter().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push_str(group);
        }
        grouped.push(*c);
    }
    match frac_part {
        Some(f) => format!("{sign}{grouped}{point}{f}"),
        None => format!("{sign}{grouped}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_follow_the_language() {
        let d = NaiveDate::from_ymd_opt(2026, 6, 30).unwrap_or_default();
        assert_eq!(format_date(d, Language::Fr), "30/06/2026");
        assert_eq!(format_date(d, Language::En), "30 June 2026");
    }

    #[test]
    fn digits_are_grouped_by_thousands() {
        assert_eq!(group_digits("1500.00", " ", ","), "1 500,00");
        assert_eq!(group_digits("1234567.5", ",", "."), "1,234,567.5");
        assert_eq!(group_digits("999", ",", "."), "999");
        assert_eq!(group_digits("-1000", ",", "."), "-1,000");
    }
}
