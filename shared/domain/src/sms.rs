//! Text messages: how many segments a text takes (GSM 03.38 7-bit or UCS-2), and fitting a
//! reminder into the segments allowed. Owns the counting rules; it sends nothing and knows
//! no gateway.
//!
//! GSM-7: 160 septets in one segment, 153 per segment once split (the rest carries the
//! concatenation header); characters of the extension table (`€ [ ] { } \ ^ ~ |` and form
//! feed) take two septets, an escape and the character, never split across segments. Any
//! character outside both tables makes the whole message UCS-2: 70 UTF-16 units in one
//! segment, 67 once split, surrogate pairs kept together.

/// The GSM 03.38 default alphabet, in table order, without the escape code (0x1B).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The extension table: each one is sent as escape + character.
const GSM7_EXTENSION: &str = "^{}\\[~]|€\u{0C}";

/// A reminder by SMS takes at most this many segments: longer ones are shortened or refused.
pub const MAX_SMS_SEGMENTS: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsEncoding {
    Gsm7,
    Ucs2,
}

impl SmsEncoding {
    pub fn as_str(self) -> &'static str {
        match self {
            SmsEncoding::Gsm7 => "gsm7",
            SmsEncoding::Ucs2 => "ucs2",
        }
    }
}

/// The size of a text once sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmsSize {
    pub encoding: SmsEncoding,
    /// Septets for GSM-7, UTF-16 code units for UCS-2.
    pub units: usize,
    pub segments: usize,
}

/// Septets a character takes in GSM-7, or `None` when it has no GSM-7 form.
fn gsm7_septets(c: char) -> Option<usize> {
    if GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// Packs units into segments of `per_part` without splitting a character.
fn parts(costs: &[usize], single: usize, per_part: usize) -> usize {
    let total: usize = costs.iter().sum();
    if total <= single {
        return 1;
    }
    let (mut segments, mut used) = (1, 0);
    for &cost in costs {
        if used + cost > per_part {
            segments += 1;
            used = 0;
        }
        used += cost;
    }
    segments
}

/// How the text would be sent: its encoding, size and number of segments.
pub fn sms_size(text: &str) -> SmsSize {
    let gsm: Option<Vec<usize>> = text.chars().map(gsm7_septets).collect();
    match gsm {
        Some(costs) => SmsSize {
            encoding: SmsEncoding::Gsm7,
            units: costs.iter().sum(),
            segments: parts(&costs, 160, 153),
        },
        None => {
            let costs: Vec<usize> = text.chars().map(char::len_utf16).collect();
            SmsSize {
                encoding: SmsEncoding::Ucs2,
                units: costs.iter().sum(),
                segments: parts(&costs, 70, 67),
            }
        }
    }
}

/// Spaces that typography puts in amounts and dates (no-break, narrow no-break, thin) are
/// plain spaces in a text message: one of them alone would make the whole text UCS-2.
pub fn plain_spaces(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{a0}' | '\u{202f}' | '\u{2009}' | '\u{2007}' => ' ',
            other => other,
        })
        .collect()
}

/// Replaces characters outside GSM-7 by their closest GSM-7 form where there is one
/// (`ê` → `e`, `ç` → `c`, `’` → `'`, `…` → `...`); others are kept.
pub fn to_gsm7_lossy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in plain_spaces(text).chars() {
        if gsm7_septets(c).is_some() {
            out.push(c);
            continue;
        }
        let replacement = match c {
            'á' | 'â' | 'ã' | 'ā' => "a",
            'À' | 'Á' | 'Â' | 'Ã' => "A",
            'ç' => "c",
            'ê' | 'ë' | 'ē' => "e",
            'È' | 'Ê' | 'Ë' => "E",
            'í' | 'î' | 'ï' => "i",
            'Ì' | 'Í' | 'Î' | 'Ï' => "I",
            'ó' | 'ô' | 'õ' | 'œ' => "o",
            'Ò' | 'Ó' | 'Ô' | 'Õ' => "O",
            'ú' | 'û' => "u",
            'Ù' | 'Ú' | 'Û' => "U",
            'ý' | 'ÿ' => "y",
            'Œ' => "OE",
            '‘' | '’' | '‚' | '′' => "'",
            '“' | '”' | '„' | '«' | '»' => "\"",
            '–' | '—' | '‐' | '−' => "-",
            '…' => "...",
            '\t' => " ",
            _ => "",
        };
        if replacement.is_empty() {
            out.push(c);
        } else {
            out.push_str(replacement);
        }
    }
    out
}

/// The first of `candidates` (most complete first) that fits in `max_segments`, tried as
/// written and then in GSM-7 form; the text is refused when even the last does not fit.
pub fn fit_sms(candidates: &[&str], max_segments: usize) -> Result<(String, SmsSize), String> {
    let mut smallest: Option<SmsSize> = None;
    for candidate in candidates {
        let written = plain_spaces(candidate.trim());
        if written.is_empty() {
            continue;
        }
        for text in [written.clone(), to_gsm7_lossy(&written)] {
            let size = sms_size(&text);
            if size.segments <= max_segments {
                return Ok((text, size));
            }
            if smallest.is_none_or(|s| size.segments < s.segments) {
                smallest = Some(size);
            }
        }
    }
    match smallest {
        None => Err("the text message is empty".to_string()),
        Some(size) => Err(format!(
            "the text message takes {} segments ({} {} units), more than the {max_segments} allowed: shorten the template",
            size.segments,
            size.units,
            size.encoding.as_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gsm7_tables_have_their_documented_sizes() {
        assert_eq!(GSM7_BASIC.chars().count(), 127);
        assert_eq!(GSM7_EXTENSION.chars().count(), 10);
    }

    #[test]
    fn gsm7_fits_160_septets_in_one_segment_then_153_per_segment() {
        let size = |n: usize| sms_size(&"a".repeat(n));
        assert_eq!(
            size(160),
            SmsSize {
                encoding: SmsEncoding::Gsm7,
                units: 160,
                segments: 1
            }
        );
        assert_eq!(size(161).segments, 2);
        assert_eq!(size(306).segments, 2);
        assert_eq!(size(307).segments, 3);
        assert_eq!(sms_size("").segments, 1);
        // French accents of the basic table stay GSM-7.
        assert_eq!(
            sms_size("Échéance à régler, délai dépassé").encoding,
            SmsEncoding::Gsm7
        );
    }

    #[test]
    fn extension_characters_count_double_and_are_not_split() {
        assert_eq!(sms_size("100 €").units, 6);
        assert_eq!(sms_size(&"€".repeat(80)).segments, 1); // 160 septets
        assert_eq!(sms_size(&format!("{}a", "€".repeat(80))).segments, 2);
        // 152 septets then a euro sign: it does not fit in the first part's last septet, so
        // it opens the second part; 153 + 2 + ... stays two parts up to 306 septets.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(151));
        assert_eq!(
            sms_size(&text),
            SmsSize {
                encoding: SmsEncoding::Gsm7,
                units: 305,
                segments: 2
            }
        );
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(152));
        assert_eq!(
            sms_size(&text).segments,
            3,
            "the escape pair moved to part 2: 2 + 152 > 153"
        );
        for c in ['^', '{', '}', '\\', '[', ']', '~', '|'] {
            assert_eq!(sms_size(&c.to_string()).units, 2, "{c}");
        }
    }

    #[test]
    fn one_character_outside_gsm7_makes_it_ucs2_with_70_then_67_per_segment() {
        assert_eq!(sms_size("prête").encoding, SmsEncoding::Ucs2);
        let size = |n: usize| sms_size(&format!("ê{}", "a".repeat(n - 1)));
        assert_eq!(
            size(70),
            SmsSize {
                encoding: SmsEncoding::Ucs2,
                units: 70,
                segments: 1
            }
        );
        assert_eq!(size(71).segments, 2);
        assert_eq!(size(134).segments, 2);
        assert_eq!(size(135).segments, 3);
        // An emoji is two UTF-16 units, kept in one part.
        assert_eq!(sms_size("😀").units, 2);
        let text = format!("{}😀bbb", "a".repeat(66));
        assert_eq!(sms_size(&text).segments, 2, "71 units: parts of 66 and 5");
        let text = format!("{}😀{}", "a".repeat(66), "b".repeat(66));
        assert_eq!(
            sms_size(&text).segments,
            3,
            "66 + the pair does not fit 67: parts of 66, 67, 1"
        );
    }

    #[test]
    fn a_long_text_falls_back_to_gsm7_then_to_the_short_version_or_is_refused() {
        // UCS-2 for one "ê" and the no-break spaces of the amount: 3 segments as written.
        let long = format!("Votre facture F-1 de 1\u{202f}500,00\u{a0}€ est à régler. Vous êtes prié de procéder au paiement dès que possible, {}", "x".repeat(60));
        assert_eq!(sms_size(&long).segments, 3);
        let (text, size) = fit_sms(&[&long], 2).unwrap();
        assert_eq!(size.encoding, SmsEncoding::Gsm7);
        assert_eq!(size.segments, 2);
        assert!(
            text.contains("1 500,00 €") && text.contains("Vous etes prié"),
            "{text}"
        );
        let huge = "x".repeat(400);
        let (text, _) = fit_sms(&[&huge, "Facture F-1 impayée."], 2).unwrap();
        assert_eq!(text, "Facture F-1 impayée.");
        let refused = fit_sms(&[&huge, &huge], 2).unwrap_err();
        assert!(
            refused.contains("3 segments") && refused.contains("gsm7"),
            "{refused}"
        );
        assert!(fit_sms(&["  "], 2).is_err());
        // Characters with no GSM-7 form keep the text UCS-2.
        let (text, size) = fit_sms(&["Payé ✓"], 2).unwrap();
        assert_eq!((text.as_str(), size.encoding), ("Payé ✓", SmsEncoding::Ucs2));
    }
}
