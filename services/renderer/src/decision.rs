//! What a `reminder.due` job comes to, decided from plain values (no database, no broker):
//! whether the step still waits for rendering, the channel it goes out on (its own, a
//! fallback, or none), and what a rendering settles (stored and handed on, skipped, failed),
//! with the journal entry and the job it leaves. `render_job` loads the values and applies
//! what these functions decide; the rules live here, and are tested here.

use crate::Rendering;
use relance_contracts::{ReminderFailedV1, ReminderRenderedV1, ReminderSkippedV1, VERSION_1};
use relance_domain::policy::DunningPolicy;
use relance_domain::{choose_channel, Channel, ChannelChoice, Reach, Risk, StepKind};
use relance_storage::deliveries::Contact;
use relance_storage::steps::{RenderedMessage, StepRecord, StepStatus};
use serde_json::json;
use uuid::Uuid;

/// A job is rendered only while its step is `queued`; a step that moved on (rendered
/// already, cancelled by a payment) has the job ignored.
pub fn awaits_rendering(step: &StepRecord) -> bool {
    step.status == StepStatus::Queued
}

/// Where a queued step goes out.
#[derive(Debug)]
pub enum Route {
    /// Rendered on `step.channel`: its own, or the one it fell back to from `planned`, for
    /// `fallback` (the reason).
    Render {
        planned: Channel,
        step: StepRecord,
        fallback: Option<String>,
    },
    /// No channel of its order reaches the customer: skipped, for `reason`.
    Unreachable { reason: String },
}

impl Route {
    /// The customer's other overdue invoices grouped into the message are listed only when
    /// it goes out on its own channel: a message that falls back goes alone.
    pub fn lists_group(&self) -> bool {
        matches!(self, Route::Render { fallback: None, .. })
    }
}

/// The channel a step goes out on: its own, or a fallback when its own cannot reach the
/// customer. Only reminders fall back (a thank-you or a recap goes by email).
pub fn route(policy: &DunningPolicy, step: &StepRecord, risk: Risk, contact: &Contact) -> Route {
    let choice = if step.kind == StepKind::Reminder {
        let order = policy.fallback_order(risk, &step.name, step.channel);
        choose_channel(step.channel, &order, &reach_of(contact))
    } else {
        ChannelChoice::Own
    };
    match choice {
        ChannelChoice::Own => Route::Render {
            planned: step.channel,
            step: step.clone(),
            fallback: None,
        },
        ChannelChoice::Fallback { to, template, reason } => Route::Render {
            planned: step.channel,
            step: StepRecord {
                channel: to,
                template,
                ..step.clone()
            },
            fallback: Some(reason),
        },
        ChannelChoice::Unreachable { reason } => Route::Unreachable { reason },
    }
}

/// How a customer can be reached besides email: a blank postal address is none.
fn reach_of(contact: &Contact) -> Reach {
    Reach {
        phone: contact.phone.clone(),
        has_postal_address: contact
            .postal_address
            .as_deref()
            .is_some_and(|a| !a.trim().is_empty()),
        email_bounce: contact.email_bounce.clone(),
    }
}

/// What a rendering settles.
#[derive(Debug)]
pub enum Settlement {
    /// Stored and handed on.
    Store(Box<Stored>),
    /// Nothing to send it to on this channel: skipped.
    Skip(ReminderSkippedV1),
    /// It cannot be made deliverable: failed.
    Fail(ReminderFailedV1),
}

/// A rendered message stored (with its PDF, if any), the step moved to `next_status`,
/// journaled with `journal_detail`, and handed on: `handoff` to the channel's sender, or,
/// for a call (`None`), as a call task.
#[derive(Debug)]
pub struct Stored {
    pub message: RenderedMessage,
    pub document: Option<crate::Document>,
    pub next_status: StepStatus,
    pub journal_detail: serde_json::Value,
    pub handoff: Option<Handoff>,
    /// The customer's statement of account going with the message, when its policy step
    /// says so (see [`attaches_statement`]).
    pub statement: Option<crate::statement::StatementDocument>,
}

/// Whether the message of `step` carries the customer's statement of account: its policy
/// step has `attach_statement = true` and it goes out by email or letter (an SMS or a call
/// task has nothing to attach it to).
pub fn attaches_statement(policy: &DunningPolicy, step: &StepRecord, risk: Risk) -> bool {
    let attachable = matches!(
        step.channel,
        Channel::Email | Channel::Letter | Channel::RegisteredLetter
    );
    attachable
        && policy
            .step_named(risk, &step.name)
            .is_some_and(|template| template.attach_statement)
}

impl Stored {
    /// Attaches the statement, and names it and its SHA-256 in the journal entry.
    pub fn attach(&mut self, statement: crate::statement::StatementDocument) {
        if let Some(detail) = self.journal_detail.as_object_mut() {
            detail.insert(
                "statement".to_string(),
                json!({ "file": statement.name, "sha256": statement.sha256, "pages": statement.pages }),
            );
        }
        self.statement = Some(statement);
    }
}

/// The job a rendered message leaves for its channel's sender.
#[derive(Debug)]
pub struct Handoff {
    pub routing_key: String,
    pub job: ReminderRenderedV1,
}

/// What the rendering of `step` (on its final channel) settles.
pub fn settle(step: &StepRecord, rendering: Rendering) -> Settlement {
    let (message, document, facts) = match rendering {
        Rendering::Ready {
            message,
            document,
            facts,
        } => (message, document, facts),
        Rendering::Skip(reason) => return Settlement::Skip(ReminderSkippedV1 { reason }),
        Rendering::Refuse(reason) => {
            return Settlement::Fail(ReminderFailedV1 {
                reason,
                attempts: None,
            })
        }
    };
    // A call waits for its outcome; a message waits for its sender.
    let (next_status, handoff) = if step.channel.is_task() {
        (StepStatus::AwaitingOutcome, None)
    } else {
        (StepStatus::Rendered, Some(handoff_of(step)))
    };
    Settlement::Store(Box::new(Stored {
        journal_detail: rendered_detail(step, &message, &facts),
        message: *message,
        document,
        next_status,
        handoff,
        statement: None,
    }))
}

/// `reminder.rendered`'s journal entry: the step, channel, message id, subject and
/// recipients, then the channel's own facts (a letter's hash and amounts, an SMS's size).
fn rendered_detail(
    step: &StepRecord,
    rendered: &RenderedMessage,
    facts: &serde_json::Value,
) -> serde_json::Value {
    let mut detail = json!({
        "step": step.name,
        "channel": step.channel,
        "message_id": rendered.message_id,
        "subject": rendered.subject,
        "recipients": rendered.recipients,
    });
    if let (Some(detail), Some(facts)) = (detail.as_object_mut(), facts.as_object()) {
        detail.extend(facts.clone());
    }
    detail
}

/// The job for the sender of the step's channel (`reminder.rendered.<kind>`).
fn handoff_of(step: &StepRecord) -> Handoff {
    Handoff {
        routing_key: relance_contracts::names::reminder_rendered(step.channel.sender_kind()),
        job: ReminderRenderedV1 {
            version: VERSION_1,
            job_id: Uuid::new_v4(),
            step_id: step.id,
            invoice_number: step.invoice_number.clone(),
            step: step.name.clone(),
            channel: step.channel.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures;
    use chrono::Utc;

    fn reminder(channel: &str) -> StepRecord {
        test_fixtures::step("reminder_2", "reminder", channel, "reminder", "firm")
    }

    fn policy() -> DunningPolicy {
        DunningPolicy::default_policy().unwrap()
    }

    fn message(step: &StepRecord) -> Box<RenderedMessage> {
        Box::new(RenderedMessage {
            step_id: step.id,
            channel: step.channel,
            message_id: "<m@x>".into(),
            recipients: vec!["ap@acme.test".into()],
            cc: Vec::new(),
            subject: "Facture F-9".into(),
            body_text: "text".into(),
            body_html: None,
            attach_invoice: false,
            rendered_at: Utc::now(),
        })
    }

    fn ready(step: &StepRecord, facts: serde_json::Value) -> Rendering {
        Rendering::Ready {
            message: message(step),
            document: None,
            facts,
        }
    }

    #[test]
    fn only_a_queued_step_is_rendered() {
        let mut step = reminder("email");
        assert!(awaits_rendering(&step));
        for status in [StepStatus::Rendered, StepStatus::Cancelled, StepStatus::Sent] {
            step.status = status;
            assert!(!awaits_rendering(&step), "{status}");
        }
    }

    #[test]
    fn a_reachable_step_keeps_its_channel_and_lists_its_group() {
        let step = reminder("email");
        let route = route(&policy(), &step, "medium".parse().unwrap(), &Contact::default());
        assert!(route.lists_group());
        let Route::Render {
            planned,
            step,
            fallback,
        } = route
        else {
            panic!("rendered")
        };
        assert_eq!(
            (planned, step.channel, fallback),
            (Channel::Email, Channel::Email, None)
        );
    }

    #[test]
    fn an_sms_without_phone_falls_back_alone_or_is_skipped() {
        let step = reminder("sms");
        let with_address = Contact {
            postal_address: Some("12 rue des Forges\n69002 Lyon".into()),
            ..Contact::default()
        };
        let reach = reach_of(&with_address);
        let order = policy().fallback_order("medium".parse().unwrap(), &step.name, step.channel);
        let expected = choose_channel(step.channel, &order, &reach);
        let route = route(&policy(), &step, "medium".parse().unwrap(), &with_address);
        match (expected, &route) {
            (
                ChannelChoice::Fallback { to, template, reason },
                Route::Render {
                    planned,
                    step: moved,
                    fallback,
                },
            ) => {
                assert_eq!(*planned, Channel::Sms);
                assert_eq!((moved.channel, &moved.template), (to, &template));
                assert_eq!(fallback.as_deref(), Some(reason.as_str()));
                // Everything else of the step is kept.
                assert_eq!(
                    (moved.id, &moved.name, moved.tone),
                    (step.id, &step.name, step.tone)
                );
                assert!(!route.lists_group());
            }
            (ChannelChoice::Unreachable { reason }, Route::Unreachable { reason: got }) => {
                assert_eq!(&reason, got);
            }
            (ChannelChoice::Own, _) => panic!("an SMS without a phone number cannot go as planned"),
            (expected, route) => panic!("{expected:?} decided as {route:?}"),
        }
    }

    #[test]
    fn only_reminders_fall_back() {
        for kind in ["thanks", "recap"] {
            let step = test_fixtures::step("x", kind, "sms", "x", "courteous");
            let route = route(&policy(), &step, "high".parse().unwrap(), &Contact::default());
            assert!(
                matches!(&route, Route::Render { fallback: None, step: s, .. } if s.channel == Channel::Sms),
                "{kind}: {route:?}"
            );
        }
    }

    #[test]
    fn a_blank_postal_address_is_no_address() {
        let blank = Contact {
            postal_address: Some("  \n ".into()),
            phone: Some("+33612345678".into()),
            email_bounce: Some("550".into()),
        };
        let reach = reach_of(&blank);
        assert!(!reach.has_postal_address);
        assert_eq!(reach.phone.as_deref(), Some("+33612345678"));
        assert_eq!(reach.email_bounce.as_deref(), Some("550"));
    }

    #[test]
    fn a_message_is_handed_to_its_senders_queue_and_journaled_with_its_facts() {
        let step = reminder("registered_letter");
        let Settlement::Store(stored) = settle(
            &step,
            ready(&step, json!({ "pages": 2, "subject": "kept from facts" })),
        ) else {
            panic!("stored")
        };
        let Stored {
            next_status,
            journal_detail,
            handoff,
            ..
        } = *stored;
        assert_eq!(next_status, StepStatus::Rendered);
        let handoff = handoff.unwrap();
        assert_eq!(
            handoff.routing_key,
            relance_contracts::names::reminder_rendered("letter")
        );
        assert_eq!(handoff.job.step_id, step.id);
        assert_eq!(handoff.job.channel, "registered_letter");
        assert_eq!(handoff.job.step, "reminder_2");
        assert_eq!(
            journal_detail,
            json!({
                "step": "reminder_2",
                "channel": "registered_letter",
                "message_id": "<m@x>",
                "subject": "kept from facts",
                "recipients": ["ap@acme.test"],
                "pages": 2,
            })
        );
    }

    #[test]
    fn a_call_awaits_its_outcome_and_goes_to_no_sender() {
        let step = reminder("call");
        let Settlement::Store(stored) = settle(&step, ready(&step, json!({ "task": true }))) else {
            panic!("stored")
        };
        assert_eq!(stored.next_status, StepStatus::AwaitingOutcome);
        assert!(stored.handoff.is_none());
    }

    #[test]
    fn nothing_to_send_to_skips_and_a_text_too_long_fails() {
        let step = reminder("sms");
        assert!(matches!(
            settle(&step, Rendering::Skip("no phone".into())),
            Settlement::Skip(ReminderSkippedV1 { reason }) if reason == "no phone"
        ));
        assert!(matches!(
            settle(&step, Rendering::Refuse("3 segments".into())),
            Settlement::Fail(ReminderFailedV1 { reason, attempts: None }) if reason == "3 segments"
        ));
    }
}
