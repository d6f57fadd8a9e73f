//! Creditors given as data (`creditor.updated`), and the one lookup every document goes
//! through: [`for_invoice`], the creditor an invoice names, or the default creditor (the
//! environment's) when it names none. Decides nothing: the scheduler validates, and the
//! renderer, sender, portal and statements print what they are given.

use anyhow::Context;
use chrono::{DateTime, Utc};
use relance_domain::creditor::{Creditor, DEFAULT_CREDITOR_ID};
use sqlx::PgConnection;
use uuid::Uuid;

/// A stored creditor and when its details were last changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCreditor {
    pub creditor: Creditor,
    pub details_as_of: DateTime<Utc>,
    pub revision: i32,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct CreditorRow {
    id: String,
    name: String,
    legal_form: String,
    siren: String,
    siret: String,
    rcs_city: String,
    share_capital: String,
    address: String,
    vat_number: String,
    iban: String,
    bic: String,
    email: String,
    phone: String,
    letterhead: Vec<String>,
    signature_fr: String,
    signature_en: String,
    signatory: String,
    signatory_title_fr: String,
    signatory_title_en: String,
    mail_from: String,
    reply_to: String,
    sms_sender: String,
    policy: Option<String>,
    templates: Option<String>,
    details_as_of: DateTime<Utc>,
    revision: i32,
    updated_at: DateTime<Utc>,
}

impl CreditorRow {
    /// The stored creditor; an empty sender address takes the default creditor's.
    fn stored(self, default: &Creditor) -> StoredCreditor {
        let or_default = |own: String, default: &str| {
            if own.trim().is_empty() {
                default.to_string()
            } else {
                own
            }
        };
        StoredCreditor {
            creditor: Creditor {
                id: self.id,
                name: self.name,
                address: self.address,
                iban: self.iban,
                bic: self.bic,
                email: self.email,
                phone: self.phone,
                signature: or_default(self.signature_fr, &default.signature),
                signature_en: or_default(self.signature_en, &default.signature_en),
                signatory: self.signatory,
                signatory_title_fr: self.signatory_title_fr,
                signatory_title_en: self.signatory_title_en,
                legal_form: self.legal_form,
                share_capital: self.share_capital,
                siren: self.siren,
                siret: self.siret,
                rcs_city: self.rcs_city,
                vat_number: self.vat_number,
                letterhead: self.letterhead,
                reply_to: or_default(self.reply_to, &default.reply_to),
                mail_from: or_default(self.mail_from, &default.mail_from),
                sms_sender: self.sms_sender,
                policy: self.policy.unwrap_or_default(),
                templates: self.templates.unwrap_or_default(),
            },
            details_as_of: self.details_as_of,
            revision: self.revision,
            updated_at: self.updated_at,
        }
    }
}

const CREDITOR_COLUMNS: &str =
    "c.id, c.name, c.legal_form, c.siren, c.siret, c.rcs_city, c.share_capital, c.address,
    c.vat_number, c.iban, c.bic, c.email, c.phone, c.letterhead, c.signature_fr, c.signature_en, c.signatory,
    c.signatory_title_fr, c.signatory_title_en, c.mail_from, c.reply_to, c.sms_sender, c.policy, c.templates, c.details_as_of,
    c.revision, c.updated_at";

/// Creates the creditor or replaces its details, unless the stored details come from a
/// message newer than `as_of` (an older message arriving late changes nothing). Returns
/// whether it wrote. `c` was validated (`relance_domain::creditor::validate_creditor`).
pub async fn save(
    tx: &mut PgConnection,
    c: &Creditor,
    as_of: DateTime<Utc>,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let written = sqlx::query(
        "INSERT INTO creditors AS c (id, name, legal_form, siren, siret, rcs_city, share_capital, address, vat_number,
             iban, bic, email, phone, letterhead, signature_fr, signature_en, signatory, signatory_title_fr,
             signatory_title_en, mail_from, reply_to, sms_sender, details_as_of, created_at, updated_at, policy,
             templates)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21,
             $22, $23, $24, $24, NULLIF($25, ''), NULLIF($26, ''))
         ON CONFLICT (id) DO UPDATE SET name = $2, legal_form = $3, siren = $4, siret = $5, rcs_city = $6,
             share_capital = $7, address = $8, vat_number = $9, iban = $10, bic = $11, email = $12, phone = $13,
             letterhead = $14, signature_fr = $15, signature_en = $16, signatory = $17, signatory_title_fr = $18,
             signatory_title_en = $19, mail_from = $20, reply_to = $21, sms_sender = $22, details_as_of = $23,
             updated_at = $24, revision = c.revision + 1, policy = NULLIF($25, ''), templates = NULLIF($26, '')
         WHERE c.details_as_of <= $23",
    )
    .bind(&c.id)
    .bind(&c.name)
    .bind(&c.legal_form)
    .bind(&c.siren)
    .bind(&c.siret)
    .bind(&c.rcs_city)
    .bind(&c.share_capital)
    .bind(&c.address)
    .bind(&c.vat_number)
    .bind(&c.iban)
    .bind(&c.bic)
    .bind(&c.email)
    .bind(&c.phone)
    .bind(&c.letterhead)
    .bind(&c.signature)
    .bind(&c.signature_en)
    .bind(&c.signatory)
    .bind(&c.signatory_title_fr)
    .bind(&c.signatory_title_en)
    .bind(&c.mail_from)
    .bind(&c.reply_to)
    .bind(&c.sms_sender)
    .bind(as_of)
    .bind(at)
    .bind(&c.policy)
    .bind(&c.templates)
    .execute(tx)
    .await
    .with_context(|| format!("saving creditor {}", c.id))?;
    Ok(written.rows_affected() == 1)
}

/// Whether a creditor of this id is stored (the default one always exists).
pub async fn exists(db: &mut PgConnection, id: &str) -> anyhow::Result<bool> {
    if id == DEFAULT_CREDITOR_ID {
        return Ok(true);
    }
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM creditors WHERE id = $1)")
        .bind(id)
        .fetch_one(db)
        .await
        .context("looking up the creditor")
}

/// The stored creditor of this id (not the default one).
pub async fn find(
    db: &mut PgConnection,
    default: &Creditor,
    id: &str,
) -> anyhow::Result<Option<StoredCreditor>> {
    let row: Option<CreditorRow> = sqlx::query_as(&format!(
        "SELECT {CREDITOR_COLUMNS} FROM creditors c WHERE c.id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
    .context("reading the creditor")?;
    Ok(row.map(|row| row.stored(default)))
}

/// Every stored creditor, by id.
pub async fn list(db: &mut PgConnection, default: &Creditor) -> anyhow::Result<Vec<StoredCreditor>> {
    let rows: Vec<CreditorRow> = sqlx::query_as(&format!(
        "SELECT {CREDITOR_COLUMNS} FROM creditors c ORDER BY c.id"
    ))
    .fetch_all(db)
    .await
    .context("reading the creditors")?;
    Ok(rows.into_iter().map(|row| row.stored(default)).collect())
}

/// The creditor an invoice names, as stored now; `default` (the environment's) when it
/// names none. The one lookup through which every message, letter and page of an invoice
/// gets its creditor.
pub async fn for_invoice(
    db: &mut PgConnection,
    default: &Creditor,
    invoice_id: Uuid,
) -> anyhow::Result<Creditor> {
    let row: Option<CreditorRow> = sqlx::query_as(&format!(
        "SELECT {CREDITOR_COLUMNS} FROM invoices i JOIN creditors c ON c.id = i.creditor_id WHERE i.id = $1"
    ))
    .bind(invoice_id)
    .fetch_optional(db)
    .await
    .context("reading the invoice's creditor")?;
    Ok(row.map_or_else(|| default.clone(), |row| row.stored(default).creditor))
}

/// The named policy of the invoice's creditor (`None`: the default policy). For the places
/// that do not hold the invoice's record (whose `policy` says the same).
pub async fn policy_of_invoice(db: &mut PgConnection, invoice_id: Uuid) -> anyhow::Result<Option<String>> {
    let policy: Option<Option<String>> = sqlx::query_scalar(
        "SELECT c.policy FROM invoices i JOIN creditors c ON c.id = i.creditor_id WHERE i.id = $1",
    )
    .bind(invoice_id)
    .fetch_optional(db)
    .await
    .context("reading the policy of the invoice's creditor")?;
    Ok(policy.flatten())
}

/// [`for_invoice`] by invoice number.
pub async fn for_invoice_number(
    db: &mut PgConnection,
    default: &Creditor,
    number: &str,
) -> anyhow::Result<Creditor> {
    let id: Option<Uuid> = sqlx::query_scalar("SELECT id FROM invoices WHERE number = $1")
        .bind(number)
        .fetch_optional(&mut *db)
        .await
        .context("reading the invoice")?;
    match id {
        Some(id) => for_invoice(db, default, id).await,
        None => Ok(default.clone()),
    }
}

/// Names the invoice's creditor (at intake). `DEFAULT_CREDITOR_ID` leaves it the default.
pub async fn assign(tx: &mut PgConnection, invoice_id: Uuid, creditor_id: &str) -> anyhow::Result<()> {
    if creditor_id == DEFAULT_CREDITOR_ID {
        return Ok(());
    }
    sqlx::query("UPDATE invoices SET creditor_id = $2 WHERE id = $1")
        .bind(invoice_id)
        .bind(creditor_id)
        .execute(tx)
        .await
        .context("naming the invoice's creditor")?;
    Ok(())
}

/// A customer's statement of account speaks for one creditor: that of `invoice_number` (the
/// invoice a message or a link is about), else that of the customer's latest invoice still
/// owed (else latest at all). Keeps in `source` only that creditor's invoices, and returns it.
pub async fn statement_creditor(
    db: &mut PgConnection,
    default: &Creditor,
    source: &mut crate::statements::StatementSource,
    invoice_number: Option<&str>,
) -> anyhow::Result<Creditor> {
    let invoice: Option<(Uuid, Option<String>)> = sqlx::query_as(
        "SELECT id, creditor_id FROM invoices WHERE customer_id = $1 AND ($2::text IS NULL OR number = $2)
         ORDER BY (status IN ('open', 'handed_off') AND balance > 0) DESC, issued_on DESC, number DESC LIMIT 1",
    )
    .bind(&source.customer.id)
    .bind(invoice_number)
    .fetch_optional(&mut *db)
    .await
    .context("reading the statement's invoice")?;
    let Some((invoice_id, creditor_id)) = invoice else {
        return Ok(default.clone());
    };
    let numbers: Vec<String> = sqlx::query_scalar(
        "SELECT number FROM invoices WHERE customer_id = $1 AND creditor_id IS NOT DISTINCT FROM $2",
    )
    .bind(&source.customer.id)
    .bind(&creditor_id)
    .fetch_all(&mut *db)
    .await
    .context("reading the creditor's invoices of the customer")?;
    source
        .invoices
        .retain(|line| numbers.contains(&line.invoice.number));
    for_invoice(db, default, invoice_id).await
}
