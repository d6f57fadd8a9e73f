//! Keeps personal data out of logs and traces. Error texts may quote what a customer
//! record holds (an invalid address, an SMTP server's answer naming the mailbox): they go
//! through [`redact`] before reaching a log line or a span. The full text stays where it is
//! needed and protected: the database (proof) and the dead-letter header (for the operator).

/// Characters that end a word when looking for an email address.
fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || "\"'<>(),;:[]{}`".contains(c)
}

fn looks_like_email(word: &str) -> bool {
    match word.split_once('@') {
        Some((local, domain)) => !local.is_empty() && domain.contains('.') && !domain.starts_with('.'),
        None => false,
    }
}

/// Masks email addresses and phone numbers (a run starting with `+` or `0` that holds at
/// least 9 digits, separated by spaces, dots, dashes or parentheses) in `text`.
pub fn redact(text: &str) -> String {
    let masked_emails = mask_words(text, is_delimiter, looks_like_email, "<email>");
    mask_phone_numbers(&masked_emails)
}

fn mask_words(text: &str, delimiter: fn(char) -> bool, matches: fn(&str) -> bool, mask: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    for c in text.chars() {
        if delimiter(c) {
            out.push_str(if matches(&word) { mask } else { &word });
            word.clear();
            out.push(c);
        } else {
            word.push(c);
        }
    }
    out.push_str(if matches(&word) { mask } else { &word });
    out
}

fn mask_phone_numbers(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let starts_number = (chars[i] == '+' || chars[i] == '0')
            && (i == 0 || !(chars[i - 1].is_alphanumeric() || "-_.".contains(chars[i - 1])))
            && chars
                .get(i + 1)
                .is_some_and(|c| c.is_ascii_digit() || " ()".contains(*c));
        if starts_number {
            let mut end = i + 1;
            while end < chars.len() && (chars[end].is_ascii_digit() || " .-()".contains(chars[end])) {
                end += 1;
            }
            // Trailing separators belong to the sentence, not the number.
            while end > i + 1 && !chars[end - 1].is_ascii_digit() {
                end -= 1;
            }
            let digits = chars[i..end].iter().filter(|c| c.is_ascii_digit()).count();
            let followed_by_word = chars.get(end).is_some_and(|c| c.is_alphanumeric());
            if digits >= 9 && !followed_by_word {
                out.push_str("<phone>");
                i = end;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn masks_emails_and_phone_numbers() {
        assert_eq!(
            redact("invoice.customer.email: \"jeanne@@acme\" is not valid; to <jeanne.martin@acme.fr>"),
            "invoice.customer.email: \"jeanne@@acme\" is not valid; to <<email>>"
        );
        assert_eq!(
            redact("permanent error (550): 5.1.1 compta+x@acme.test: mailbox unavailable"),
            "permanent error (550): 5.1.1 <email>: mailbox unavailable"
        );
        assert_eq!(redact("call +33 6 12 34 56 78 now"), "call <phone> now");
        assert_eq!(redact("phone 06.12.34.56.78."), "phone <phone>.");
        assert_eq!(redact("phone (0)6 12 34 56 78"), "phone (<phone>");
    }

    #[test]
    fn keeps_what_is_not_personal() {
        for text in [
            "amount 1500.00 EUR due 2026-03-05, invoice F-2026-0042",
            "retry 3 after 0.5 s",
            "step 0b6c1d0e-8f5a-4c1e-9a54-000000000001 queued",
            "connecting to 127.0.0.1:5432 failed",
        ] {
            assert_eq!(redact(text), text);
        }
    }
}
