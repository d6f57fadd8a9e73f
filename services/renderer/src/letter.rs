//! Letters and registered letters: the template's `subject` and `body` blocks laid out as a
//! PDF with the creditor's letterhead, the debtor's postal address, place and date, and the
//! invoice references. A formal notice (tone `formal`) also states the late interest accrued
//! to date and, for a business, the 40 EUR recovery indemnity (Code de commerce L441-10 and
//! D441-5), the deadline to pay and what follows. A customer without a postal address has
//! the step skipped, with the reason.

use crate::pdf::{self, Letter};
use crate::{common_context, Common, Document, Rendering, Target};
use anyhow::anyhow;
use minijinja::Environment;
use relance_config::Config;
pub(crate) use relance_documents::letterhead::{letterhead, percent, place};
use relance_domain::claim::{Claim, INDEMNITY_CURRENCY};
use relance_domain::locale::format_date;
use relance_domain::{Channel, Language, Money};
use relance_storage::invoices::InvoiceRecord;
use relance_storage::steps::{RenderedMessage, StepRecord};
use rust_decimal::Decimal;
use serde_json::json;
use sha2::{Digest, Sha256};

struct Labels {
    registered: &'static str,
    subject: &'static str,
    attention: &'static str,
    number: &'static str,
    issued: &'static str,
    due: &'static str,
    amount: &'static str,
    paid: &'static str,
    balance: &'static str,
    interest: &'static str,
    indemnity: &'static str,
    total: &'static str,
}

fn labels(language: Language) -> Labels {
    match language {
        Language::Fr => Labels {
            registered: "Lettre recommandée avec accusé de réception",
            subject: "Objet : ",
            attention: "À l'attention de ",
            number: "Facture n°",
            issued: "Date de la facture",
            due: "Date d'échéance",
            amount: "Montant de la facture",
            paid: "Déjà réglé",
            balance: "Reste dû",
            interest: "Pénalités de retard au ",
            indemnity: "Indemnité forfaitaire pour frais de recouvrement",
            total: "Total réclamé",
        },
        Language::En => Labels {
            registered: "Registered letter with acknowledgement of receipt",
            subject: "Subject: ",
            attention: "For the attention of ",
            number: "Invoice no.",
            issued: "Invoice date",
            due: "Due date",
            amount: "Invoice amount",
            paid: "Already paid",
            balance: "Balance due",
            interest: "Late-payment interest to ",
            indemnity: "Fixed compensation for recovery costs",
            total: "Total claimed",
        },
    }
}

/// What a letter claims: nothing on top of the balance before the due date.
struct Claimed {
    overdue: bool,
    interest: Decimal,
    indemnity: Decimal,
    total: Decimal,
    rate: Option<Decimal>,
    /// The indemnity is added to the total (not in a total in another currency than the euro).
    indemnity_in_total: bool,
}

impl Claimed {
    fn of(claim: Option<&Claim>, invoice: &InvoiceRecord) -> Self {
        match claim {
            Some(c) => Claimed {
                overdue: true,
                interest: c.late_interest,
                indemnity: c.recovery_indemnity,
                total: c.total,
                rate: c.rate_percent,
                indemnity_in_total: c.indemnity_in_total,
            },
            None => Claimed {
                overdue: false,
                interest: Decimal::ZERO,
                indemnity: Decimal::ZERO,
                total: invoice.balance,
                rate: None,
                indemnity_in_total: true,
            },
        }
    }
}

pub fn render(env: &Environment<'static>, config: &Config, target: &Target<'_>) -> anyhow::Result<Rendering> {
    let Target {
        step,
        invoice,
        contact,
        now,
        ..
    } = *target;
    let Some(address) = contact.postal_address.clone().filter(|a| !a.trim().is_empty()) else {
        return Ok(Rendering::Skip("the customer has no postal address".to_string()));
    };
    let registered = step.channel == Channel::RegisteredLetter;
    let common = common_context(config, target)?;
    let (language, today) = (common.language, common.today);
    let claimed = Claimed::of(common.claim.as_ref(), invoice);
    let creditor = &config.settings.creditor;
    let place_and_date = match language {
        Language::Fr => format!(
            "{}, le {}",
            place(&creditor.address),
            format_date(today, language)
        ),
        Language::En => format!("{}, {}", place(&creditor.address), format_date(today, language)),
    };
    let references = references(step, invoice, &common, &claimed);
    let (subject, paragraphs) = subject_and_paragraphs(env, config, step, common, &claimed, registered)?;
    let l = labels(language);
    let recipient = recipient(&l, invoice, &address);
    let letter = Letter {
        title: subject.clone(),
        language: language.as_str().to_string(),
        letterhead: letterhead(config),
        recipient: recipient.clone(),
        mention: registered.then(|| l.registered.to_string()),
        place_and_date: place_and_date.clone(),
        subject: format!("{}{}", l.subject, subject),
        references: references.clone(),
        tables: Vec::new(),
        paragraphs: paragraphs.clone(),
        // The mentions business papers must carry (R123-237), on every page.
        footer: format!(
            "{} · {}",
            creditor.legal_mentions_in(language.as_str()),
            invoice.number
        ),
    };
    let (pdf, pages) = pdf::render(&letter)?;
    let sha256 = hex::encode(Sha256::digest(&pdf));
    let body_text = letter_text(&place_and_date, &l, &subject, &references, &paragraphs);
    Ok(Rendering::Ready {
        message: Box::new(RenderedMessage {
            step_id: step.id,
            channel: step.channel,
            message_id: crate::sms::delivery_key(step),
            // The name, then the address lines: what the postal service prints.
            recipients: std::iter::once(invoice.customer_name.clone())
                .chain(recipient.iter().skip(2).cloned())
                .collect(),
            cc: Vec::new(),
            subject,
            body_text,
            body_html: None,
            attach_invoice: invoice.has_pdf,
            rendered_at: now,
        }),
        facts: json!({
            "sha256": sha256,
            "pages": pages,
            "registered": registered,
            "late_interest": claimed.interest,
            "recovery_indemnity": claimed.indemnity,
            "total_claimed": claimed.total,
        }),
        document: Some(Document { pdf, sha256, pages }),
    })
}

/// The template's `subject` (one line) and `body` (its paragraphs), rendered with what the
/// letter claims.
fn subject_and_paragraphs(
    env: &Environment<'static>,
    config: &Config,
    step: &StepRecord,
    common: Common,
    claimed: &Claimed,
    registered: bool,
) -> anyhow::Result<(String, Vec<String>)> {
    let Common {
        language,
        today,
        context,
        money,
        claim_context,
        ..
    } = common;
    let euros = |amount| Money::new(amount, INDEMNITY_CURRENCY).format(language);
    let context = minijinja::context! {
        today => format_date(today, language),
        registered => registered,
        notice_days => config.settings.channels.formal_notice_days,
        interest => money(claimed.interest),
        interest_rate => claimed.rate.map(|r| percent(r, language)),
        has_interest => !claimed.interest.is_zero(),
        indemnity => euros(claimed.indemnity),
        has_indemnity => !claimed.indemnity.is_zero(),
        total_claimed => money(claimed.total),
        claim => claim_context,
        ..context
    };
    let name = format!("{}/{}.letter", language.as_str(), step.template);
    let template = env.get_template(&name)?;
    let mut captured = template.render_captured(&context)?;
    let (subject, body) = captured
        .with_state_mut(|state| -> Result<(String, String), minijinja::Error> {
            Ok((state.render_block("subject")?, state.render_block("body")?))
        })
        .map_err(|e| anyhow!("{name}: {e}"))?;
    let subject: String = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    let paragraphs: Vec<String> = body
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    Ok((subject, paragraphs))
}

/// The invoice's references, and for a formal notice of a late invoice the interest to
/// date, the indemnity and the total claimed.
fn references(
    step: &StepRecord,
    invoice: &InvoiceRecord,
    common: &Common,
    claimed: &Claimed,
) -> Vec<(String, String)> {
    let (language, today, money) = (common.language, common.today, &common.money);
    let euros = |amount| Money::new(amount, INDEMNITY_CURRENCY).format(language);
    let l = labels(language);
    let formal = step.tone == relance_domain::Tone::Formal;
    // Credit notes lower the debt itself: the letter states the invoice net of them.
    let owed = invoice.amount - invoice.credited;
    let paid = owed - invoice.balance;
    let mut references = vec![
        (l.number.to_string(), invoice.number.clone()),
        (l.issued.to_string(), format_date(invoice.issued_on, language)),
        (l.due.to_string(), format_date(invoice.due_on, language)),
        (l.amount.to_string(), money(owed)),
    ];
    if !paid.is_zero() {
        references.push((l.paid.to_string(), money(paid)));
    }
    references.push((l.balance.to_string(), money(invoice.balance)));
    if formal && claimed.overdue {
        references.push((
            format!("{}{}", l.interest, format_date(today, language)),
            money(claimed.interest),
        ));
        if !claimed.indemnity.is_zero() {
            references.push((l.indemnity.to_string(), euros(claimed.indemnity)));
        }
        // A total in another currency than the euro leaves the indemnity out, and says so.
        let total_label = match language {
            Language::Fr if !claimed.indemnity_in_total && !claimed.indemnity.is_zero() => {
                format!("{} (hors indemnité)", l.total)
            }
            Language::En if !claimed.indemnity_in_total && !claimed.indemnity.is_zero() => {
                format!("{} (excluding the indemnity)", l.total)
            }
            _ => l.total.to_string(),
        };
        references.push((total_label, money(claimed.total)));
    }
    references
}

/// The customer's name, the contact it is for, then the address lines.
fn recipient(l: &Labels, invoice: &InvoiceRecord, address: &str) -> Vec<String> {
    let mut recipient = vec![
        invoice.customer_name.clone(),
        format!("{}{}", l.attention, invoice.contact_name),
    ];
    recipient.extend(
        address
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string),
    );
    recipient
}

/// The text of the letter, searchable beside its PDF.
fn letter_text(
    place_and_date: &str,
    l: &Labels,
    subject: &str,
    references: &[(String, String)],
    paragraphs: &[String],
) -> String {
    let mut body_text = format!("{place_and_date}\n\n{}{subject}\n\n", l.subject);
    for (label, value) in references {
        body_text.push_str(&format!("{label} : {value}\n"));
    }
    body_text.push('\n');
    body_text.push_str(&paragraphs.join("\n\n"));
    body_text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::invoice;

    fn step(channel: &str) -> StepRecord {
        crate::test_fixtures::step("formal_notice", "reminder", channel, "formal_notice", "formal")
    }

    use chrono::{TimeZone, Utc};
    use relance_config::Settings;
    use relance_domain::{DunningPolicy, SimulatedClock};
    use relance_storage::deliveries::{ClaimHistory, Contact};
    use std::sync::Arc;

    /// Renders the formal notice of F-9 on 17 March 2026: 1 500.00 due 9 March, 500.00 paid
    /// on 13 March.
    fn formal_notice(kind: &str, language: &str, contact: &Contact) -> Rendering {
        let settings = Settings::from_vars(Vec::<(String, String)>::new()).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 3, 17, 8, 0, 0).unwrap();
        let config = Config::with_clock(settings, Arc::new(SimulatedClock::starting_at(now))).unwrap();
        let env = crate::templates::environment(None, &DunningPolicy::default_policy().unwrap()).unwrap();
        let paid = ClaimHistory {
            payments: vec![(
                chrono::NaiveDate::from_ymd_opt(2026, 3, 13).unwrap(),
                Decimal::new(50000, 2),
            )],
            ..ClaimHistory::default()
        };
        let (step, invoice) = (step("registered_letter"), invoice(kind, language));
        let target = Target {
            step: &step,
            invoice: &invoice,
            contact,
            history: &paid,
            now,
        };
        render(&env, &config, &target).unwrap()
    }

    fn address() -> Contact {
        Contact {
            phone: None,
            postal_address: Some("12 rue des Forges\n69002 Lyon".into()),
            email_bounce: None,
        }
    }

    #[test]
    fn a_formal_notice_to_a_business_claims_interest_and_the_indemnity() {
        let Rendering::Ready {
            message,
            document,
            facts,
        } = formal_notice("business", "fr", &address())
        else {
            panic!("not rendered")
        };
        // 1 500.00 for 4 days (10..13 March excluded the 13th) then 1 000.00 for 5 days, at
        // 12.15 %: (1 500 × 3 + 1 000 × 5) × 12.15 / 36 500 = 9 500 × 12.15 / 36 500 = 3.16.
        assert_eq!(facts["late_interest"], json!("3.16"));
        assert_eq!(facts["recovery_indemnity"], json!("40"));
        assert_eq!(facts["total_claimed"], json!("1043.16"));
        assert_eq!(facts["registered"], json!(true));
        let text = &message.body_text;
        for expected in [
            "Mise en demeure de payer – facture F-9",
            "Paris, le 17/03/2026",
            "Déjà réglé : 500,00\u{a0}€",
            "Reste dû : 1\u{202f}000,00\u{a0}€",
            "40,00\u{a0}€ (article D441-5",
            "12,15\u{a0}%",
            "dans un délai de 8 jours à compter de la réception",
            "injonction de payer",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from {text}");
        }
        assert_eq!(
            message.recipients,
            vec!["ACME Industrie SA", "12 rue des Forges", "69002 Lyon"]
        );
        let document = document.unwrap();
        assert!(document.pdf.starts_with(b"%PDF"));
        assert_eq!(document.sha256, hex::encode(Sha256::digest(&document.pdf)));
        assert_eq!(facts["sha256"], json!(document.sha256));
    }

    /// A consumer owes interest only from the formal notice (Code civil 1231-6, 1344-1), and
    /// no recovery costs (L111-8 CPCE): the notice claims the balance and says interest runs
    /// from it, without threatening costs.
    #[test]
    fn a_consumers_formal_notice_claims_the_balance_and_interest_from_the_notice_on() {
        let Rendering::Ready { message, facts, .. } = formal_notice("consumer", "en", &address()) else {
            panic!("not rendered")
        };
        assert_eq!(facts["late_interest"], json!("0"));
        assert_eq!(facts["recovery_indemnity"], json!("0"));
        assert_eq!(facts["total_claimed"], json!("1000.00"));
        let text = &message.body_text;
        assert!(text.contains("Formal notice to pay – invoice F-9"), "{text}");
        assert!(
            text.contains("the sum of €1,000.00 within 8 days of receipt"),
            "{text}"
        );
        assert!(
            text.contains("bears interest at the legal rate from the date of this formal notice"),
            "{text}"
        );
        for absent in ["D441-5", "recovery costs", "costs.", "accrued to"] {
            assert!(!text.contains(absent), "{absent:?} in {text}");
        }
    }

    #[test]
    fn without_a_postal_address_the_letter_is_skipped() {
        let rendering = formal_notice("business", "fr", &Contact::default());
        assert!(matches!(rendering, Rendering::Skip(reason) if reason.contains("postal address")));
    }

    #[test]
    fn the_place_is_the_town_of_the_last_address_line() {
        assert_eq!(place("1 rue de l'Exemple\n75001 Paris"), "Paris");
        assert_eq!(place("Quai 3\nLyon"), "Lyon");
        assert_eq!(place(""), "");
        assert_eq!(percent(Decimal::new(1215, 2), Language::Fr), "12,15\u{a0}%");
        assert_eq!(percent(Decimal::new(800, 2), Language::En), "8%");
    }
}
