//! Reading one mail of the reply-to mailbox, without I/O: what it is (a customer's reply, a
//! delivery status notification, a read notification, an automatic answer), which of
//! relance's Message-IDs it refers to, and what the journal keeps of it.

use chrono::{DateTime, Utc};
use mail_parser::{HeaderValue, MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};

/// The longest excerpt of a reply kept in the journal, in characters.
pub const EXCERPT_CHARS: usize = 280;

/// What a mail is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A person's answer (matched by `In-Reply-To`/`References`).
    Reply,
    /// A delivery status notification (RFC 3464) saying the message could not be delivered,
    /// for good (a `5.x.x` status), to these recipients.
    Bounce {
        recipients: Vec<String>,
        status: String,
        diagnostic: Option<String>,
    },
    /// A delivery status notification that is no permanent failure (delayed, relayed).
    DeliveryReport,
    /// A read notification (RFC 8098 MDN).
    ReadNotification { disposition: Option<String> },
    /// An automatic answer (out of office...): `Auto-Submitted` other than `no`.
    Automatic,
}

/// A mail as the reader uses it.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Its Message-ID (with angle brackets), or `sha256:<hex>` when it has none: the key it
    /// is taken once under.
    pub key: String,
    pub sha256: String,
    pub kind: Kind,
    /// The Message-IDs it refers to (with angle brackets): `In-Reply-To`, `References`, and
    /// for a report, the original message's.
    pub refers_to: Vec<String>,
    pub from: String,
    pub subject: String,
    pub date: Option<DateTime<Utc>>,
    pub excerpt: String,
}

fn bracket(id: &str) -> String {
    format!("<{}>", id.trim().trim_start_matches('<').trim_end_matches('>'))
}

fn ids_of(value: &HeaderValue<'_>) -> Vec<String> {
    value
        .as_text_list()
        .map(|list| list.iter().map(|id| bracket(id)).collect())
        .unwrap_or_default()
}

/// The `Name: value` fields of a report's machine-readable part, read from the raw mail
/// (the parts are short and 7-bit): lowercase name, value. Continuation lines are joined.
fn report_fields(raw: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in raw.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            if !name.is_empty() && !name.contains(' ') {
                fields.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
    }
    fields
}

/// The address of a `Final-Recipient: rfc822; someone@example.fr` field.
fn recipient_address(value: &str) -> String {
    let address = value.split_once(';').map_or(value, |(_, a)| a);
    address
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

/// Reads a mail; `None` when it cannot be parsed at all.
pub fn read(raw: &[u8]) -> Option<Mail> {
    let message = MessageParser::default().parse(raw)?;
    let sha256 = hex::encode(Sha256::digest(raw));
    let own_id = message.message_id().map(bracket);
    let key = own_id.clone().unwrap_or_else(|| format!("sha256:{sha256}"));
    let mut refers_to = ids_of(message.in_reply_to());
    for id in ids_of(message.references()) {
        if !refers_to.contains(&id) {
            refers_to.push(id);
        }
    }
    let (report_type, is_report) = match message.content_type() {
        Some(ct)
            if ct.ctype().eq_ignore_ascii_case("multipart")
                && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report")) =>
        {
            (ct.attribute("report-type").map(str::to_ascii_lowercase), true)
        }
        _ => (None, false),
    };
    let text = String::from_utf8_lossy(raw);
    let kind = if is_report {
        let fields = report_fields(&text);
        // The original message: `Original-Message-ID` (MDNs), or the Message-ID of the
        // returned headers (DSNs); the report's own Message-ID is left out.
        for (name, value) in &fields {
            if name == "original-message-id" || name == "message-id" {
                let id = bracket(value);
                if Some(&id) != own_id.as_ref() && !refers_to.contains(&id) {
                    refers_to.push(id);
                }
            }
        }
        match report_type.as_deref() {
            Some("delivery-status") => delivery_status(&fields),
            Some("disposition-notification") => Kind::ReadNotification {
                disposition: fields
                    .iter()
                    .find(|(name, _)| name == "disposition")
                    .map(|(_, v)| v.clone()),
            },
            _ => Kind::Automatic,
        }
    } else {
        match message.header_raw("Auto-Submitted").map(str::trim) {
            Some(value) if !value.eq_ignore_ascii_case("no") => Kind::Automatic,
            _ => Kind::Reply,
        }
    };
    let from = message
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .unwrap_or_default()
        .to_string();
    let subject = message.subject().unwrap_or_default().to_string();
    let date = message
        .date()
        .and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0));
    let excerpt = excerpt(message.body_text(0).as_deref().unwrap_or_default());
    Some(Mail {
        key,
        sha256,
        kind,
        refers_to,
        from,
        subject,
        date,
        excerpt,
    })
}

/// A DSN's verdict: a bounce when a recipient failed with a permanent (`5.x.x`) status.
fn delivery_status(fields: &[(String, String)]) -> Kind {
    let mut recipients = Vec::new();
    let mut status = None;
    let mut diagnostic = None;
    let mut current: Option<String> = None;
    let mut failed = false;
    for (name, value) in fields {
        match name.as_str() {
            "final-recipient" => {
                current = Some(recipient_address(value));
                failed = false;
            }
            "action" => failed = value.trim().eq_ignore_ascii_case("failed"),
            "status" if failed && value.trim().starts_with('5') => {
                if let Some(address) = current.take() {
                    recipients.push(address);
                }
                status.get_or_insert_with(|| value.trim().to_string());
            }
            "diagnostic-code" => {
                diagnostic.get_or_insert_with(|| value.clone());
            }
            _ => {}
        }
    }
    match status {
        Some(status) if !recipients.is_empty() => Kind::Bounce {
            recipients,
            status,
            diagnostic,
        },
        _ => Kind::DeliveryReport,
    }
}

/// The start of a reply's own text: quoted lines (`>`) and the quote's header left out,
/// whitespace squeezed, at most [`EXCERPT_CHARS`] characters.
pub fn excerpt(body: &str) -> String {
    let mut own = Vec::new();
    for line in body.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('>') {
            continue;
        }
        // "Le 3 mars 2026, X a écrit :" / "On ..., X wrote:" opens the quote.
        if (trimmed.ends_with("wrote:") || trimmed.ends_with("a écrit :") || trimmed.ends_with("a écrit:"))
            && !own.is_empty()
        {
            break;
        }
        own.push(trimmed);
    }
    let squeezed = own.join(" ").split_whitespace().collect::<Vec<_>>().join(" ");
    squeezed.chars().take(EXCERPT_CHARS).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn a_reply_refers_to_the_message_it_answers() {
        let raw = "From: Client <client@exemple.fr>\r\nTo: compta@exemple.test\r\nSubject: Re: Facture F-1\r\n\
Message-ID: <r1@client.fr>\r\nIn-Reply-To: <reminder_1.abc@exemple.test>\r\nReferences: <a@b> <reminder_1.abc@exemple.test>\r\n\
Date: Tue, 3 Mar 2026 10:00:00 +0100\r\n\r\nNous avons payé hier.\r\n\r\nLe 2 mars 2026, Exemple a écrit :\r\n> Votre facture\r\n";
        let mail = read(raw.as_bytes()).unwrap();
        assert_eq!(mail.kind, Kind::Reply);
        assert_eq!(mail.key, "<r1@client.fr>");
        assert_eq!(mail.refers_to, vec!["<reminder_1.abc@exemple.test>", "<a@b>"]);
        assert_eq!(mail.from, "client@exemple.fr");
        assert_eq!(mail.excerpt, "Nous avons payé hier.");
        assert_eq!(mail.date.unwrap().to_rfc3339(), "2026-03-03T09:00:00+00:00");
    }

    #[test]
    fn a_dsn_with_a_permanent_failure_is_a_bounce_of_its_recipient() {
        let raw = "From: MAILER-DAEMON@mx.test\r\nTo: relance@exemple.test\r\nSubject: Undelivered\r\nMessage-ID: <dsn1@mx.test>\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n--B\r\n\
Content-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n\
Reporting-MTA: dns; mx.test\r\n\r\nFinal-Recipient: rfc822; client@exemple.fr\r\nAction: failed\r\nStatus: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\n\
Message-ID: <reminder_1.abc@exemple.test>\r\nSubject: Facture F-1\r\n--B--\r\n";
        let mail = read(raw.as_bytes()).unwrap();
        assert_eq!(
            mail.kind,
            Kind::Bounce {
                recipients: vec!["client@exemple.fr".into()],
                status: "5.1.1".into(),
                diagnostic: Some("smtp; 550 5.1.1 no such user".into())
            }
        );
        assert_eq!(mail.refers_to, vec!["<reminder_1.abc@exemple.test>"]);
    }

    #[test]
    fn a_delayed_dsn_is_no_bounce_and_an_mdn_is_a_read_notification() {
        let dsn = "Message-ID: <d@mx>\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n--B\r\n\
Content-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822; c@x.fr\r\nAction: delayed\r\nStatus: 4.4.1\r\n--B--\r\n";
        assert_eq!(read(dsn.as_bytes()).unwrap().kind, Kind::DeliveryReport);
        let mdn = "Message-ID: <m@x.fr>\r\nContent-Type: multipart/report; report-type=disposition-notification; boundary=B\r\n\r\n--B\r\n\
Content-Type: message/disposition-notification\r\n\r\nFinal-Recipient: rfc822; c@x.fr\r\nOriginal-Message-ID: <reminder_1.abc@exemple.test>\r\n\
Disposition: manual-action/MDN-sent-manually; displayed\r\n--B--\r\n";
        let mail = read(mdn.as_bytes()).unwrap();
        assert_eq!(
            mail.kind,
            Kind::ReadNotification {
                disposition: Some("manual-action/MDN-sent-manually; displayed".into())
            }
        );
        assert_eq!(mail.refers_to, vec!["<reminder_1.abc@exemple.test>"]);
    }

    #[test]
    fn an_out_of_office_is_automatic_and_a_mail_without_id_is_keyed_by_its_hash() {
        let raw = "From: c@x.fr\r\nAuto-Submitted: auto-replied\r\nIn-Reply-To: <a@b>\r\n\r\nAbsent.\r\n";
        let mail = read(raw.as_bytes()).unwrap();
        assert_eq!(mail.kind, Kind::Automatic);
        assert!(mail.key.starts_with("sha256:"));
    }
}
