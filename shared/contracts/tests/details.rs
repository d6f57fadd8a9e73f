//! The typed details write exactly the JSON the services' `json!` calls wrote before them:
//! the same keys, `null` where they wrote `null`, nothing where they left a key out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{TimeZone, Utc};
use relance_contracts::*;
use serde_json::json;
use uuid::Uuid;

fn written(detail: &impl EventDetail) -> serde_json::Value {
    detail.to_detail().unwrap()
}

#[test]
fn a_postponement_tells_absent_from_null() {
    let until = Utc.with_ymd_and_hms(2026, 7, 21, 7, 0, 0).unwrap();
    let held = ReminderPostponedV1 {
        reason: "invoice paused (dispute) before sending".into(),
        until: None,
        calendar: None,
    };
    assert_eq!(
        written(&held),
        json!({ "reason": "invoice paused (dispute) before sending" })
    );
    let disputed = ReminderPostponedV1 {
        reason: "invoice paused (dispute)".into(),
        until: Some(None),
        calendar: None,
    };
    assert_eq!(
        written(&disputed),
        json!({ "reason": "invoice paused (dispute)", "until": null })
    );
    let window = ReminderPostponedV1 {
        reason: "outside its send window".into(),
        until: Some(Some(until)),
        calendar: Some("FR".into()),
    };
    assert_eq!(
        written(&window),
        json!({ "reason": "outside its send window", "until": until, "calendar": "FR" })
    );
    for detail in [held, disputed, window] {
        let back: ReminderPostponedV1 = serde_json::from_value(written(&detail)).unwrap();
        assert_eq!(back, detail);
    }
}

#[test]
fn a_closure_is_tagged_by_its_reason() {
    let credit = InvoiceClosedV1::CreditNote {
        credit_note_id: "AV-1".into(),
        amount: "1500".into(),
        currency: "EUR".into(),
    };
    assert_eq!(
        written(&credit),
        json!({ "reason": "credit_note", "credit_note_id": "AV-1", "amount": "1500", "currency": "EUR" })
    );
    let refused = InvoiceClosedV1::Refused(LifecycleClosureV1 {
        status: "refused".into(),
        code: 210,
        note: None,
    });
    assert_eq!(
        written(&refused),
        json!({ "reason": "refused", "status": "refused", "code": 210, "note": null })
    );
    let back: InvoiceClosedV1 = serde_json::from_value(written(&refused)).unwrap();
    assert_eq!(back, refused);
}

#[test]
fn each_delivery_proof_reads_back_as_its_own_kind() {
    let sms = ReminderSentV1::Sms(SmsSentV1 {
        message_id: "relance-sms_1-1".into(),
        gateway_message_id: None,
        gateway_response: "202 Accepted".into(),
        recipients: vec!["+33612345678".into()],
        stop_requested: None,
    });
    let grouped = ReminderSentV1::Grouped(GroupedSentV1 {
        grouped_into: GroupedIntoV1 {
            invoice_number: "F-2".into(),
            step: "reminder_1".into(),
        },
        message_id: Some("<m@relance>".into()),
    });
    let recovered = ReminderSentV1::Recovered(RecoveredSentV1 {
        recovered: "the sender stopped after the provider accepted the message".into(),
        stage: "answered".into(),
        message_id: None,
        response: Some("250 Ok".into()),
        stop_requested: Some(StopRequestedV1 {
            at: Utc.with_ymd_and_hms(2026, 7, 5, 7, 0, 3).unwrap(),
            reason: None,
        }),
    });
    for sent in [sms, grouped, recovered] {
        let back: ReminderSentV1 = serde_json::from_value(written(&sent)).unwrap();
        assert_eq!(back, sent);
        let thanks: ThanksSentV1 = serde_json::from_value(written(&sent)).unwrap();
        assert_eq!(written(&thanks), written(&sent));
    }
}

#[test]
fn an_event_built_from_a_detail_carries_its_type() {
    let at = Utc.with_ymd_and_hms(2026, 7, 6, 8, 15, 2).unwrap();
    let settled = InvoiceSettledV1 {
        amount_paid: "1500".into(),
        currency: "EUR".into(),
    };
    let id = Uuid::nil();
    let event = EventV1::new(id, at, "F-2026-0042", None, &settled).unwrap();
    assert_eq!(
        serde_json::to_value(&event).unwrap(),
        json!({
            "version": 1,
            "event_id": id,
            "event_type": "invoice.settled",
            "occurred_at": at,
            "invoice_number": "F-2026-0042",
            "detail": { "amount_paid": "1500", "currency": "EUR" },
        })
    );
    assert_eq!(event.detail_as::<InvoiceSettledV1>().unwrap().unwrap(), settled);
    assert!(event.detail_as::<InvoicePausedV1>().is_none());
    let step = StepRef {
        name: "reminder_1",
        channel: "email",
    };
    let failed = ReminderFailedV1 {
        reason: "550 no such user".into(),
        attempts: Some(1),
    };
    let event = EventV1::new(id, at, "F-2026-0042", Some(step), &failed).unwrap();
    assert_eq!(
        (event.step.as_deref(), event.channel.as_deref()),
        (Some("reminder_1"), Some("email"))
    );
    assert_eq!(
        event.detail,
        json!({ "reason": "550 no such user", "attempts": 1 })
    );
}
