//! A customer's reply handled (`reply.handled`): the reply is marked handled and, once no
//! reply of the invoice that paused it is left to handle, the `reply` pause ends and the
//! sequence resumes if nothing else holds it. A receipt acknowledged on the customer page
//! (`receipt.acknowledged`): journaled as proof and announced (`invoice.receipt_acknowledged`).

use crate::inbound::{refused, InvoiceMessage};
use crate::sequence_effects::end_pauses;
use chrono::{DateTime, Utc};
use relance_config::Config;
use relance_contracts::{names, InvoiceReceiptAcknowledgedV1, ReceiptAcknowledgedV1, ReplyHandledV1};
use relance_domain::collections::PauseKind;
use relance_domain::Rejection;
use relance_messaging::HandlerError;
use relance_storage::invoices::InvoiceRecord;
use relance_storage::{replies, PgConnection};
use uuid::Uuid;

/// The longest source of an acknowledgement taken.
const MAX_TEXT: usize = 2000;

fn invoice_number(number: &str, field: &str) -> Result<String, Rejection> {
    let number = number.trim();
    if number.is_empty() {
        return Err(Rejection::new(field, "is empty"));
    }
    Ok(number.to_string())
}

/// `reply.handled`, validated.
pub struct HandledReply {
    pub invoice_number: String,
    pub reply_id: Uuid,
    pub note: Option<String>,
}

impl InvoiceMessage for ReplyHandledV1 {
    type Valid = HandledReply;
    const ROUTING_KEY: &'static str = names::REPLY_HANDLED;
    const WHAT: &'static str = "reply handled";

    fn event_id(&self) -> &str {
        &self.event_id
    }
    fn invoice_number_sent(&self) -> &str {
        &self.reply.invoice_number
    }
    fn invoice_number(valid: &HandledReply) -> &str {
        &valid.invoice_number
    }
    fn validate(&self) -> Result<HandledReply, Rejection> {
        let reply_id = Uuid::parse_str(self.reply.reply_id.trim())
            .map_err(|_| Rejection::new("reply.reply_id", "is not a reply id (see `relance tasks`)"))?;
        Ok(HandledReply {
            invoice_number: invoice_number(&self.reply.invoice_number, "reply.invoice_number")?,
            reply_id,
            note: relance_sequence::reply_handled::checked_note(self.reply.note.as_deref())?,
        })
    }

    async fn apply(
        &self,
        valid: HandledReply,
        tx: &mut PgConnection,
        config: &Config,
        invoice: &InvoiceRecord,
        now: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        if !replies::mark_handled(tx, invoice.id, valid.reply_id, valid.note.as_deref(), now).await? {
            return Err(refused(
                Self::WHAT,
                &invoice.number,
                format!("{} is not a reply of this invoice left to handle", valid.reply_id),
            ));
        }
        relance_storage::journal::append(
            tx,
            now,
            &invoice.number,
            None,
            "reply.handled",
            serde_json::json!({ "reply_id": valid.reply_id, "note": valid.note, "event_id": self.event_id }),
        )
        .await?;
        if replies::open_pausing(tx, invoice.id).await? == 0 {
            let reason = match &valid.note {
                Some(note) => format!("reply handled ({note})"),
                None => "reply handled".to_string(),
            };
            end_pauses(tx, config, invoice, &[PauseKind::Reply], &reason, now).await?;
        }
        Ok(())
    }
}

/// `receipt.acknowledged`, validated.
pub struct Acknowledgement {
    pub invoice_number: String,
    pub source: String,
}

impl InvoiceMessage for ReceiptAcknowledgedV1 {
    type Valid = Acknowledgement;
    const ROUTING_KEY: &'static str = names::RECEIPT_ACKNOWLEDGED;
    const WHAT: &'static str = "acknowledgement of receipt";

    fn event_id(&self) -> &str {
        &self.event_id
    }
    fn invoice_number_sent(&self) -> &str {
        &self.receipt.invoice_number
    }
    fn invoice_number(valid: &Acknowledgement) -> &str {
        &valid.invoice_number
    }
    fn validate(&self) -> Result<Acknowledgement, Rejection> {
        let source = self.receipt.source.trim();
        if source.is_empty() || source.chars().count() > MAX_TEXT {
            return Err(Rejection::new(
                "receipt.source",
                "must say where it came from (e.g. customer page)",
            ));
        }
        Ok(Acknowledgement {
            invoice_number: invoice_number(&self.receipt.invoice_number, "receipt.invoice_number")?,
            source: source.to_string(),
        })
    }

    async fn apply(
        &self,
        valid: Acknowledgement,
        tx: &mut PgConnection,
        _config: &Config,
        invoice: &InvoiceRecord,
        now: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        let detail = InvoiceReceiptAcknowledgedV1 {
            source: valid.source,
            acknowledged_at: self.occurred_at.min(now),
            source_id: self.event_id.clone(),
            disposition: None,
        };
        relance_sequence::replies::acknowledge_receipt(tx, invoice, &detail, now).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use relance_contracts::{HandledReplyV1, ReceiptV1};

    fn handled(reply_id: &str, note: Option<&str>) -> ReplyHandledV1 {
        ReplyHandledV1 {
            version: 1,
            event_id: "e-1".into(),
            occurred_at: chrono::Utc::now(),
            reply: HandledReplyV1 {
                invoice_number: " F-1 ".into(),
                reply_id: reply_id.into(),
                note: note.map(str::to_string),
            },
        }
    }

    #[test]
    fn a_reply_handled_names_a_reply_id_and_a_blank_note_is_none() {
        let id = Uuid::new_v4();
        let valid = handled(&id.to_string(), Some("  ")).validate().unwrap();
        assert_eq!(
            (valid.invoice_number.as_str(), valid.reply_id, valid.note),
            ("F-1", id, None)
        );
        let refused = handled("F-1", None).validate().map(|_| ()).unwrap_err();
        assert_eq!(refused.field, "reply.reply_id");
    }

    #[test]
    fn an_acknowledgement_says_where_it_came_from() {
        let mut m = ReceiptAcknowledgedV1 {
            version: 1,
            event_id: "e-2".into(),
            occurred_at: chrono::Utc::now(),
            receipt: ReceiptV1 {
                invoice_number: "F-1".into(),
                source: "customer page".into(),
            },
        };
        assert_eq!(m.validate().unwrap().source, "customer page");
        m.receipt.source = " ".into();
        assert_eq!(m.validate().map(|_| ()).unwrap_err().field, "receipt.source");
        m.receipt.source = "x".into();
        m.receipt.invoice_number = "".into();
        assert_eq!(
            m.validate().map(|_| ()).unwrap_err().field,
            "receipt.invoice_number"
        );
    }
}
