//! The creditor's letterhead and the small wordings every document shares: the town it
//! writes from, its name and address block, a rate in percent.

use relance_config::Config;
use relance_domain::Language;
use rust_decimal::Decimal;

/// The town of the creditor's address: its last line without the postal code.
pub fn place(address: &str) -> String {
    let last = address
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("");
    let town = last.trim_start_matches(|c: char| c.is_ascii_digit() || c.is_whitespace());
    if town.is_empty() { last } else { town }.to_string()
}

pub fn percent(rate: Decimal, language: Language) -> String {
    let plain = rate.normalize().to_string();
    match language {
        Language::Fr => format!("{}\u{a0}%", plain.replace('.', ",")),
        Language::En => format!("{plain}%"),
    }
}

/// The creditor's name, address lines, its further letterhead lines, and email and phone
/// on one line.
pub fn letterhead(config: &Config) -> Vec<String> {
    let creditor = &config.settings.creditor;
    let mut letterhead = vec![creditor.name.clone()];
    letterhead.extend(creditor.address.lines().map(str::to_string));
    letterhead.extend(creditor.letterhead.iter().cloned());
    letterhead.push(
        [creditor.email.as_str(), creditor.phone.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" · "),
    );
    letterhead
}
