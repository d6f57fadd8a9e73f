//! The replies reader (`relance run replies`): reads the reply-to mailbox over IMAP every
//! `RELANCE_IMAP_INTERVAL_MS` and, for each mail not taken yet, finds the message of relance
//! it refers to (by `In-Reply-To`/`References`, or the original Message-ID a report quotes;
//! never by the sender's address alone), then, under the invoice's lock:
//! - a customer's reply is journaled (`reply.received`: from, subject, date, an excerpt, the
//!   mail's SHA-256) and listed by `relance tasks` until someone handles it; with `[replies]
//!   pause_on_reply = true` it pauses the sequence (kind `reply`) until then;
//! - a delivery status notification of a permanent failure (RFC 3464, `5.x.x`) marks the
//!   customer's address as bouncing, as an SMTP refusal does (its later email steps fall
//!   back to the policy's next channel);
//! - a read notification (RFC 8098 MDN) is an acknowledgement of receipt
//!   (`invoice.receipt_acknowledged`).
//!
//! Each mail is taken once, under its Message-ID, in the same transaction (so N copies of
//! the reader, a second run or a second copy of the mail record nothing twice); it is flagged
//! `\Seen` only after that commit. A mail that refers to no message of relance is recorded as
//! read and left alone (not flagged, journaled nowhere), and counted in the log.

pub mod imap;
pub mod mail;

use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use mail::{Kind, Mail};
use relance_config::Config;
use relance_contracts::InvoiceReceiptAcknowledgedV1;
use relance_domain::collections::{InvoiceState, PauseKind};
use relance_storage::invoices::{self, InvoiceRecord};
use relance_storage::journal;
use relance_storage::pauses::{self, NewPause};
use relance_storage::replies::{self, NewReply, SentMessage, TakenMail};
use serde_json::json;
use sqlx::PgPool;
use std::collections::HashSet;
use tokio_util::sync::CancellationToken;

pub const SERVICE: &str = "replies";

/// Where an acknowledgement read from the mailbox comes from, as journaled.
pub const READ_NOTIFICATION: &str = "read notification";
/// Mails fetched per IMAP command.
const FETCH_BATCH: usize = 50;

/// What one reading of the mailbox did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub replies: usize,
    pub bounces: usize,
    pub acknowledgements: usize,
    /// Mails that refer to no message of relance: left alone.
    pub unmatched: usize,
    /// Mails matched but that change nothing (a delayed delivery, an out-of-office), and
    /// mails another copy of the reader took first.
    pub ignored: usize,
}

/// The reader until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let settings = &config.settings;
    let url = settings.imap_url.clone().ok_or_else(|| {
        anyhow!("RELANCE_IMAP_URL (or RELANCE_IMAP_URL_FILE) is not set: `relance run replies` reads that mailbox")
    })?;
    let server = imap::parse_url(&url)?;
    let Some(db) = relance_messaging::worker::connect_database(SERVICE, &config, &shutdown).await? else {
        return Ok(());
    };
    tracing::info!(host = %server.host, port = server.port, mailbox = %settings.imap_mailbox, "reading the reply-to mailbox");
    loop {
        match read_mailbox(&db, &config, &server).await {
            Ok(reading) if reading != Reading::default() => {
                tracing::info!(?reading, "mailbox read");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "reading the mailbox failed; tried again at the next interval"
            ),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(settings.imap_interval) => {}
        }
    }
    db.close().await;
    Ok(())
}

/// Reads the mails of the mailbox not taken yet, once.
pub async fn read_mailbox(db: &PgPool, config: &Config, server: &imap::Server) -> anyhow::Result<Reading> {
    let settings = &config.settings;
    let password = settings.imap_password.clone().unwrap_or_default();
    let mut session = imap::login(server, &settings.imap_user, &password).await?;
    let folder = settings.imap_mailbox.as_str();
    let selected = session
        .select(folder)
        .await
        .with_context(|| format!("selecting the IMAP folder {folder:?}"))?;
    let uid_validity = selected.uid_validity.unwrap_or(0);
    let all = session.uid_search("ALL").await.context("listing the mails")?;
    let taken: HashSet<u32> = replies::taken_uids(db, folder, uid_validity)
        .await?
        .into_iter()
        .collect();
    let mut new: Vec<u32> = all.into_iter().filter(|uid| !taken.contains(uid)).collect();
    new.sort_unstable();
    // A reader that stopped between its commit and the flag left a mail taken but unflagged.
    let unseen = session
        .uid_search("UNSEEN")
        .await
        .context("listing the unseen mails")?;
    for uid in replies::uids_to_flag(db, folder, uid_validity).await? {
        if unseen.contains(&uid) {
            imap::mark_seen(&mut session, uid).await?;
        }
    }
    let mut reading = Reading::default();
    for batch in new.chunks(FETCH_BATCH) {
        let set = batch.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let mut mails = Vec::new();
        {
            // BODY.PEEK: reading a mail does not flag it; only a mail taken is flagged.
            let mut fetched = session
                .uid_fetch(&set, "(UID BODY.PEEK[])")
                .await
                .context("fetching the mails")?;
            while let Some(fetch) = fetched.next().await {
                let fetch = fetch.context("fetching a mail")?;
                if let (Some(uid), Some(body)) = (fetch.uid, fetch.body()) {
                    mails.push((uid, body.to_vec()));
                }
            }
        }
        for (uid, raw) in mails {
            let at = MailAt {
                folder,
                uid_validity,
                uid,
            };
            let (outcome, flag) = take_mail(db, config, &at, &raw).await?;
            match outcome {
                Outcome::Reply => reading.replies += 1,
                Outcome::Bounce => reading.bounces += 1,
                Outcome::Acknowledgement => reading.acknowledgements += 1,
                Outcome::Unmatched => reading.unmatched += 1,
                Outcome::Ignored => reading.ignored += 1,
            }
            if flag {
                imap::mark_seen(&mut session, uid).await?;
            }
        }
    }
    if let Err(e) = session.logout().await {
        tracing::debug!(error = %e, "IMAP logout");
    }
    Ok(reading)
}

/// Where a mail is in the mailbox.
struct MailAt<'a> {
    folder: &'a str,
    uid_validity: u32,
    uid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Reply,
    Bounce,
    Acknowledgement,
    Unmatched,
    Ignored,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Reply => "reply",
            Outcome::Bounce => "bounce",
            Outcome::Acknowledgement => "acknowledgement",
            Outcome::Unmatched => "unmatched",
            Outcome::Ignored => "ignored",
        }
    }

    /// Whether the mail is flagged `\Seen` once taken: every mail about an invoice; a mail
    /// about none is left as it was.
    fn flagged(self) -> bool {
        self != Outcome::Unmatched
    }
}

/// Takes one mail: records it, and what it means for its invoices, in one transaction.
/// Returns what it was, and whether to flag it `\Seen`.
async fn take_mail(
    db: &PgPool,
    config: &Config,
    at: &MailAt<'_>,
    raw: &[u8],
) -> anyhow::Result<(Outcome, bool)> {
    let Some(mail) = mail::read(raw) else {
        tracing::info!(uid = at.uid, "a mail that cannot be parsed: left alone");
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(raw));
        record_only(
            db,
            config,
            at,
            &format!("sha256:{sha256}"),
            &sha256,
            Outcome::Unmatched,
        )
        .await?;
        return Ok((Outcome::Unmatched, false));
    };
    let matched = if mail.refers_to.is_empty() {
        Vec::new()
    } else {
        replies::sent_messages(db, &mail.refers_to).await?
    };
    let outcome = match (&mail.kind, matched.is_empty()) {
        (_, true) => Outcome::Unmatched,
        (Kind::Reply, false) => Outcome::Reply,
        (Kind::Bounce { .. }, false) => Outcome::Bounce,
        (Kind::ReadNotification { disposition }, false) if acknowledges(disposition.as_deref()) => {
            Outcome::Acknowledgement
        }
        _ => Outcome::Ignored,
    };
    if outcome == Outcome::Unmatched {
        tracing::info!(uid = at.uid, from = %mail.from, "a mail that refers to no message of relance: left alone");
    }
    let now = config.clock.now();
    let mut tx = db.begin().await.context("starting the mail's transaction")?;
    let first_invoice = matched.first().map(|m| m.invoice_id);
    let taken = TakenMail {
        key: &mail.key,
        mailbox: at.folder,
        uid_validity: at.uid_validity,
        uid: at.uid,
        sha256: &mail.sha256,
        outcome: outcome.as_str(),
        invoice_id: first_invoice,
    };
    if !replies::take(&mut tx, &taken, now).await? {
        drop(tx);
        // Taken already: a second copy of the mail (same Message-ID, another UID), or another
        // copy of the reader was first. Its UID is recorded so it is not read again.
        let key = format!("{}#{}:{}", mail.key, at.uid_validity, at.uid);
        record_only(db, config, at, &key, &mail.sha256, Outcome::Ignored).await?;
        tracing::info!(uid = at.uid, key = %mail.key, "a mail already taken: nothing more recorded");
        // Flagged as the copy taken is (a mail about no invoice stays as it was).
        return Ok((Outcome::Ignored, outcome.flagged()));
    }
    if matches!(
        outcome,
        Outcome::Reply | Outcome::Bounce | Outcome::Acknowledgement
    ) {
        // One invoice after the other, in number order (as `sent_messages` returns them).
        let mut seen = HashSet::new();
        for sent in matched.iter().filter(|m| seen.insert(m.invoice_id)) {
            let Some(invoice) = invoices::lock_for_payment(&mut tx, &sent.invoice_number).await? else {
                continue;
            };
            apply(&mut tx, config, &mail, sent, &invoice, now).await?;
        }
    }
    tx.commit().await.context("committing the mail")?;
    Ok((outcome, outcome.flagged()))
}

/// Whether a read notification's `Disposition` acknowledges receipt: displayed or processed,
/// not deleted or denied.
fn acknowledges(disposition: Option<&str>) -> bool {
    disposition.is_none_or(|d| {
        let d = d.to_ascii_lowercase();
        !d.contains("deleted") && !d.contains("denied") && !d.contains("failed")
    })
}

/// Records a mail as read without anything else.
async fn record_only(
    db: &PgPool,
    config: &Config,
    at: &MailAt<'_>,
    key: &str,
    sha256: &str,
    outcome: Outcome,
) -> anyhow::Result<()> {
    let mut tx = db.begin().await.context("starting the mail's record")?;
    let taken = TakenMail {
        key,
        mailbox: at.folder,
        uid_validity: at.uid_validity,
        uid: at.uid,
        sha256,
        outcome: outcome.as_str(),
        invoice_id: None,
    };
    replies::take(&mut tx, &taken, config.clock.now()).await?;
    tx.commit().await.context("recording the mail as read")?;
    Ok(())
}

/// What the mail does to one invoice it refers to, under the invoice's lock.
async fn apply(
    tx: &mut sqlx::PgConnection,
    config: &Config,
    mail: &Mail,
    sent: &SentMessage,
    invoice: &InvoiceRecord,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    match &mail.kind {
        Kind::Reply => {
            let open = invoice.status == InvoiceState::Open;
            let pauses_it = config
                .policy_for(invoice.policy.as_deref())
                .replies
                .pause_on_reply
                && open;
            let reply = NewReply {
                invoice_id: invoice.id,
                step_id: Some(sent.step_id),
                mail_key: &mail.key,
                from: &mail.from,
                subject: &mail.subject,
                sent_at: mail.date,
                excerpt: &mail.excerpt,
                sha256: &mail.sha256,
                pauses: pauses_it,
            };
            let reply_id = replies::insert_reply(tx, &reply, now).await?;
            journal::append(
                tx,
                now,
                &invoice.number,
                Some(sent.step_id),
                "reply.received",
                json!({
                    "reply_id": reply_id,
                    "from": mail.from,
                    "subject": mail.subject,
                    "date": mail.date,
                    "excerpt": mail.excerpt,
                    "sha256": mail.sha256,
                    "message_id": mail.key,
                    "in_reply_to": sent.message_id,
                    "pauses": pauses_it,
                }),
            )
            .await?;
            let already = pauses::active(tx, invoice.id)
                .await?
                .iter()
                .any(|p| p.kind == PauseKind::Reply);
            if pauses_it && !already {
                let reason = format!("the customer replied ({})", mail.subject);
                let pause = NewPause {
                    kind: PauseKind::Reply.as_str(),
                    reason: &reason,
                    promised_on: None,
                    until: None,
                    source: "reply",
                    event_id: &mail.key,
                    origin: None,
                };
                relance_sequence::replies::pause(tx, invoice, &pause, now).await?;
            }
        }
        Kind::Bounce {
            recipients,
            status,
            diagnostic,
        } => {
            let reason = match diagnostic {
                Some(d) => format!("{status} (delivery status notification: {d})"),
                None => format!("{status} (delivery status notification)"),
            };
            // Only the recipients relance sent this message to.
            let ours: Vec<String> = recipients
                .iter()
                .filter(|r| sent.recipients.iter().any(|s| s.eq_ignore_ascii_case(r)))
                .cloned()
                .collect();
            let recorded = relance_sequence::replies::record_bounce(
                tx,
                invoice.id,
                &invoice.number,
                Some(sent.step_id),
                &ours,
                &reason,
                now,
            )
            .await?;
            tracing::info!(invoice = %invoice.number, recorded, %reason, "asynchronous bounce read");
        }
        Kind::ReadNotification { disposition } => {
            let detail = InvoiceReceiptAcknowledgedV1 {
                source: READ_NOTIFICATION.to_string(),
                acknowledged_at: mail.date.map_or(now, |d| d.min(now)),
                source_id: mail.key.clone(),
                disposition: disposition.clone(),
            };
            relance_sequence::replies::acknowledge_receipt(tx, invoice, &detail, now).await?;
        }
        Kind::DeliveryReport | Kind::Automatic => {}
    }
    Ok(())
}
