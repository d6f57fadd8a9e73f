//! The `reply.handled` message the accounts team sends (from `relance tasks handled` or the
//! console's task page): built from plain fields and checked by the same rule as the
//! payments listener applies, so a bad note is refused before it is published. Publishing
//! it is the caller's (transport) job.

use chrono::{DateTime, Utc};
use relance_contracts::{HandledReplyV1, ReplyHandledV1, VERSION_1};
use relance_domain::Rejection;
use uuid::Uuid;

/// The longest note taken with a handled reply, in characters.
pub const NOTE_MAX_CHARS: usize = 2000;

/// The note as it is kept: trimmed, `None` when blank; refused when longer than
/// [`NOTE_MAX_CHARS`].
pub fn checked_note(note: Option<&str>) -> Result<Option<String>, Rejection> {
    let note = note.map(str::trim).filter(|n| !n.is_empty());
    if note.is_some_and(|n| n.chars().count() > NOTE_MAX_CHARS) {
        return Err(Rejection::new(
            "reply.note",
            format!("is longer than {NOTE_MAX_CHARS} characters"),
        ));
    }
    Ok(note.map(str::to_string))
}

/// The `reply.handled` message for the reply `reply_id` of `invoice_number`, validated.
pub fn reply_handled_message(
    invoice_number: &str,
    reply_id: Uuid,
    note: Option<&str>,
    event_id: String,
    now: DateTime<Utc>,
) -> Result<ReplyHandledV1, Rejection> {
    Ok(ReplyHandledV1 {
        version: VERSION_1,
        event_id,
        occurred_at: now,
        reply: HandledReplyV1 {
            invoice_number: invoice_number.to_string(),
            reply_id: reply_id.to_string(),
            note: checked_note(note)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_is_trimmed_a_blank_one_dropped_and_a_too_long_one_refused() {
        assert_eq!(
            checked_note(Some("  called back ")).unwrap().as_deref(),
            Some("called back")
        );
        assert_eq!(checked_note(Some("   ")).unwrap(), None);
        assert_eq!(checked_note(None).unwrap(), None);
        let longest = "é".repeat(NOTE_MAX_CHARS);
        assert_eq!(checked_note(Some(&longest)).unwrap(), Some(longest.clone()));
        let refused = checked_note(Some(&format!("{longest}x"))).unwrap_err();
        assert_eq!(refused.field, "reply.note");
    }
}
