//! The creditor: who is owed, and where to pay. Printed on every message, letter and
//! statement. A deployment's default creditor comes from the environment (`RELANCE_CREDITOR_*`,
//! id [`DEFAULT_CREDITOR_ID`]); further creditors are data, created and updated by
//! `creditor.updated` (an accounting firm or a group dunning for several companies), and each
//! invoice names its own. This module owns the identity and its checks (IBAN, SIREN, SIRET);
//! it reads and stores nothing.

use std::fmt;

/// The id of the environment's creditor, the one of invoices that name none.
pub const DEFAULT_CREDITOR_ID: &str = "default";

/// A creditor's identity, as every document prints it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Creditor {
    /// A short stable key chosen by the integrator (`"default"`: the environment's).
    pub id: String,
    pub name: String,
    pub address: String,
    pub iban: String,
    pub bic: String,
    pub email: String,
    pub phone: String,
    /// The signature of French messages when no signatory is named (a department).
    pub signature: String,
    /// The same, for English messages.
    pub signature_en: String,
    /// The person who signs, and their title in each language: "Jeanne Dupont, Responsable
    /// du recouvrement". Empty: the department signature.
    pub signatory: String,
    pub signatory_title_fr: String,
    pub signatory_title_en: String,
    /// The mentions business papers must carry (Code de commerce R123-237): legal form,
    /// share capital, SIREN and the city of the trade register (RCS); the VAT number.
    pub legal_form: String,
    pub share_capital: String,
    pub siren: String,
    /// The establishment's SIRET (14 digits), printed on letters when given.
    pub siret: String,
    pub rcs_city: String,
    pub vat_number: String,
    /// Further lines of the letterhead, under the address (a website, a group's name).
    pub letterhead: Vec<String>,
    /// Address replies go to (`Reply-To`), e.g. the accounts-receivable mailbox.
    pub reply_to: String,
    /// Sender address (`From`) of every email.
    pub mail_from: String,
    /// Sender name or number of text messages; empty: the gateway's default
    /// (`RELANCE_SMS_SENDER` for the default creditor).
    pub sms_sender: String,
    /// The named policy its invoices follow (a file of `RELANCE_POLICY_DIR`); empty: the
    /// deployment's default policy.
    pub policy: String,
    /// Its own template folder (under `RELANCE_CREDITOR_TEMPLATE_DIR`); empty: the
    /// deployment's templates.
    pub templates: String,
}

/// What is wrong with a creditor's identity: the field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditorRefusal {
    pub field: &'static str,
    pub reason: String,
}

impl fmt::Display for CreditorRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.reason)
    }
}

/// An IBAN whose country format and checksum hold (ISO 13616), kept as written (trimmed);
/// the error says why not.
pub fn check_iban(raw: &str) -> Result<String, String> {
    let compact: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    match compact.parse::<iban::Iban>() {
        Ok(_) => Ok(raw.trim().to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// The digits of a SIREN (nine, Luhn checksum) or a SIRET (fourteen, Luhn checksum) when
/// `raw` is one (spaces allowed), `None` otherwise; empty stays empty.
pub fn check_company_number(raw: &str, length: usize) -> Option<String> {
    let digits: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.is_empty() {
        return Some(digits);
    }
    let luhn = digits.chars().rev().enumerate().try_fold(0u32, |sum, (i, c)| {
        let d = c.to_digit(10)?;
        let d = if i % 2 == 1 { d * 2 } else { d };
        Some(sum + if d > 9 { d - 9 } else { d })
    })?;
    (digits.len() == length && luhn % 10 == 0).then_some(digits)
}

/// A creditor given as data (`creditor.updated`, `relance creditor set`), checked: a short
/// id other than `default` (the environment's), a name, an address, a valid IBAN, a SIREN and
/// SIRET with valid checksums (the SIREN taken from the SIRET when only that is given),
/// email addresses that parse. Returns the creditor as it will be stored.
pub fn validate_creditor(mut c: Creditor) -> Result<Creditor, CreditorRefusal> {
    let refuse = |field, reason: String| Err(CreditorRefusal { field, reason });
    c.id = c.id.trim().to_string();
    if c.id.is_empty()
        || c.id.len() > 64
        || !c
            .id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    {
        return refuse(
            "creditor.id",
            format!(
                "{:?} is not a creditor id: 1 to 64 letters, digits, '-', '_' or '.'",
                c.id
            ),
        );
    }
    if c.id == DEFAULT_CREDITOR_ID {
        return refuse(
            "creditor.id",
            "\"default\" is the environment's creditor: set it with the RELANCE_CREDITOR_* variables".into(),
        );
    }
    if c.name.trim().is_empty() {
        return refuse("creditor.name", "is empty".into());
    }
    if c.address.trim().is_empty() {
        return refuse(
            "creditor.address",
            "is empty: letters and statements print it".into(),
        );
    }
    c.iban = match check_iban(&c.iban) {
        Ok(iban) => iban,
        Err(e) => return refuse("creditor.iban", format!("{:?} is not a valid IBAN ({e})", c.iban)),
    };
    let Some(siret) = check_company_number(&c.siret, 14) else {
        return refuse(
            "creditor.siret",
            format!(
                "{:?} is not a SIRET: fourteen digits with a valid checksum",
                c.siret
            ),
        );
    };
    c.siret = siret;
    let Some(siren) = check_company_number(&c.siren, 9) else {
        return refuse(
            "creditor.siren",
            format!("{:?} is not a SIREN: nine digits with a valid checksum", c.siren),
        );
    };
    c.siren = match (siren.as_str(), c.siret.get(..9)) {
        ("", Some(from_siret)) => from_siret.to_string(),
        (siren, Some(from_siret)) if siren != from_siret => {
            return refuse(
                "creditor.siret",
                format!("{} does not begin with the SIREN {siren}", c.siret),
            )
        }
        _ => siren,
    };
    for (field, name) in [
        ("creditor.policy", &mut c.policy),
        ("creditor.templates", &mut c.templates),
    ] {
        *name = name.trim().to_string();
        if !name.is_empty()
            && (name.len() > 64
                || name.starts_with('.')
                || !name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)))
        {
            return refuse(
                field,
                format!("{name:?} is not a name: 1 to 64 letters, digits, '-', '_' or '.'"),
            );
        }
    }
    for (field, address) in [
        ("creditor.email", &c.email),
        ("creditor.mail_from", &c.mail_from),
        ("creditor.reply_to", &c.reply_to),
    ] {
        let bare = address
            .rsplit('<')
            .next()
            .unwrap_or_default()
            .trim_end_matches('>')
            .trim();
        if !address.trim().is_empty() && !email_address::EmailAddress::is_valid(bare) {
            return refuse(field, format!("{address:?} is not an email address"));
        }
    }
    Ok(c)
}

/// The example creditor relance ships with: what a deployment must replace with its own.
const EXAMPLE_CREDITOR_NAME: &str = "Exemple SAS";
const EXAMPLE_CREDITOR_IBAN: &str = "FR7630006000011234567890189";
const EXAMPLE_CREDITOR_SIREN: &str = "123456782";

impl Creditor {
    /// The variables that still hold the example creditor's identity (empty: none). A
    /// service started with any of them would send reminders asking customers to pay the
    /// example's account, so `relance run` refuses unless `RELANCE_EXAMPLE_CREDITOR=allow`.
    pub fn example_parts(&self) -> Vec<&'static str> {
        let compact = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        let mut parts = Vec::new();
        if self.name.trim() == EXAMPLE_CREDITOR_NAME {
            parts.push("RELANCE_CREDITOR_NAME");
        }
        if compact(&self.iban).eq_ignore_ascii_case(EXAMPLE_CREDITOR_IBAN) {
            parts.push("RELANCE_CREDITOR_IBAN");
        }
        if self.siren == EXAMPLE_CREDITOR_SIREN {
            parts.push("RELANCE_CREDITOR_SIREN");
        }
        parts
    }

    /// Who signs a message in `language` ("fr" or "en"): the signatory and their title, or
    /// the department.
    pub fn signature_in(&self, language: &str) -> String {
        let (title, department) = match language {
            "en" => (&self.signatory_title_en, &self.signature_en),
            _ => (&self.signatory_title_fr, &self.signature),
        };
        match (self.signatory.trim(), title.trim()) {
            ("", _) => department.clone(),
            (name, "") => name.to_string(),
            (name, title) => format!("{name}, {title}"),
        }
    }

    /// The line of legal mentions of the creditor's letters and emails, in `language`:
    /// "Exemple SAS, SAS au capital de 10 000 € – RCS Paris 123 456 782", then the VAT
    /// number when set. Parts not set are left out.
    pub fn legal_mentions_in(&self, language: &str) -> String {
        let mut parts = vec![self.name.clone()];
        let form = self.legal_form.trim();
        let capital = self.share_capital.trim();
        match (form, capital, language) {
            ("", "", _) => {}
            (form, "", _) => parts.push(form.to_string()),
            ("", capital, "en") => parts.push(format!("share capital {capital}")),
            ("", capital, _) => parts.push(format!("capital de {capital}")),
            (form, capital, "en") => parts.push(format!("{form} with a share capital of {capital}")),
            (form, capital, _) => parts.push(format!("{form} au capital de {capital}")),
        }
        let siren = match self.siren.len() {
            9 => format!(
                "{} {} {}",
                &self.siren[0..3],
                &self.siren[3..6],
                &self.siren[6..9]
            ),
            _ => self.siren.clone(),
        };
        match (self.rcs_city.trim(), siren.as_str()) {
            ("", "") => {}
            ("", siren) => parts.push(format!("SIREN {siren}")),
            (city, siren) => parts.push(format!("RCS {city} {siren}").trim().to_string()),
        }
        match (self.vat_number.trim(), language) {
            ("", _) => {}
            (vat, "en") => parts.push(format!("VAT {vat}")),
            (vat, _) => parts.push(format!("TVA {vat}")),
        }
        let head = parts.remove(0);
        if parts.is_empty() {
            head
        } else {
            format!("{head}, {}", parts.join(" – "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second() -> Creditor {
        Creditor {
            id: "durand".into(),
            name: "Menuiserie Durand SARL".into(),
            address: "4 quai des Chartrons\n33000 Bordeaux".into(),
            iban: "DE89 3704 0044 0532 0130 00".into(),
            siret: "732 829 320 00074".into(),
            vat_number: "FR44732829320".into(),
            ..Creditor::default()
        }
    }

    #[test]
    fn a_creditor_given_as_data_is_checked_and_its_siren_taken_from_its_siret() {
        let Ok(c) = validate_creditor(second()) else {
            panic!("a valid creditor was refused")
        };
        assert_eq!(
            (c.siren.as_str(), c.siret.as_str()),
            ("732829320", "73282932000074")
        );
        assert_eq!(
            c.legal_mentions_in("fr"),
            "Menuiserie Durand SARL, SIREN 732 829 320 – TVA FR44732829320"
        );
        let refused = |c: Creditor| {
            validate_creditor(c)
                .err()
                .map(|r| r.to_string())
                .unwrap_or_default()
        };
        let e = refused(Creditor {
            iban: "FR76 3000 6000 0112 3456 7890 198".into(),
            ..second()
        });
        assert!(
            e.starts_with("creditor.iban \"FR76 3000 6000 0112 3456 7890 198\" is not a valid IBAN"),
            "{e}"
        );
        assert!(refused(Creditor {
            id: "default".into(),
            ..second()
        })
        .contains("RELANCE_CREDITOR_*"));
        assert!(refused(Creditor {
            id: "a b".into(),
            ..second()
        })
        .starts_with("creditor.id"));
        assert!(refused(Creditor {
            siren: "123 456 782".into(),
            ..second()
        })
        .contains("does not begin with"));
        assert!(refused(Creditor {
            siret: "73282932000075".into(),
            ..second()
        })
        .starts_with("creditor.siret"));
        assert!(refused(Creditor {
            mail_from: "Durand <nope>".into(),
            ..second()
        })
        .starts_with("creditor.mail_from"));
        assert!(validate_creditor(Creditor {
            mail_from: "Durand <compta@durand.test>".into(),
            ..second()
        })
        .is_ok());
    }
}
