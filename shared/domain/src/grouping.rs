//! Grouping: when a reminder of an overdue invoice goes out by email, which of the same
//! customer's other overdue invoices join it, so that the customer gets one message listing
//! them rather than one message each the same day. Pure: the scheduler stores the choice, the
//! renderer lists the invoices.

use crate::customer::Channel;
use crate::policy::Grouping;
use chrono::{DateTime, Days, NaiveDate, Utc};
use chrono_tz::Tz;
use uuid::Uuid;

/// The step that goes out now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lead<'a> {
    pub channel: Channel,
    pub template: &'a str,
    pub currency: &'a str,
}

/// A pending reminder step of another open invoice of the same customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherStep {
    pub step_id: Uuid,
    pub invoice_id: Uuid,
    pub invoice_due_on: NaiveDate,
    pub currency: String,
    /// A reminder of this invoice already went out today: it gets no second one.
    pub emitted_today: bool,
    pub position: i32,
    pub channel: Channel,
    pub template: String,
    pub due_at: DateTime<Utc>,
}

/// A step joining the lead's message, and the earlier pending steps of its invoice that it
/// overtakes (skipped, as in catch-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joining {
    pub step_id: Uuid,
    pub invoice_id: Uuid,
    pub overtaken: Vec<Uuid>,
}

/// The steps that join a lead going out `now` on the customer's local day `today`: for each
/// other invoice that is overdue, in the lead's currency and not reminded today, the step at
/// the same stage of the sequence (the lead's template, by email) if it is due within
/// `within_days` local days: the latest already due, else the next one. Other stages never
/// join: a formal notice is not folded into a courteous reminder, nor the reverse.
pub fn joining(
    grouping: &Grouping,
    lead: &Lead<'_>,
    today: NaiveDate,
    now: DateTime<Utc>,
    tz: Tz,
    others: &[OtherStep],
) -> Vec<Joining> {
    if lead.channel != Channel::Email {
        return Vec::new();
    }
    let horizon = today
        .checked_add_days(Days::new(u64::from(grouping.within_days)))
        .unwrap_or(today);
    let mut invoices: Vec<Uuid> = others.iter().map(|s| s.invoice_id).collect();
    invoices.sort();
    invoices.dedup();
    let mut out = Vec::new();
    for invoice in invoices {
        let steps: Vec<&OtherStep> = others.iter().filter(|s| s.invoice_id == invoice).collect();
        let Some(first) = steps.first() else { continue };
        if first.emitted_today || first.invoice_due_on >= today || first.currency != lead.currency {
            continue;
        }
        let eligible = |s: &&&OtherStep| {
            s.channel == Channel::Email
                && s.template == lead.template
                && s.due_at.with_timezone(&tz).date_naive() <= horizon
        };
        let due_now = steps
            .iter()
            .filter(eligible)
            .filter(|s| s.due_at <= now)
            .max_by_key(|s| s.position);
        let next = steps.iter().filter(eligible).min_by_key(|s| s.position);
        let Some(member) = due_now.or(next) else { continue };
        out.push(Joining {
            step_id: member.step_id,
            invoice_id: invoice,
            overtaken: steps
                .iter()
                .filter(|s| s.position < member.position)
                .map(|s| s.step_id)
                .collect(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use chrono_tz::Europe::Paris;

    fn at(d: u32, h: u32) -> DateTime<Utc> {
        Paris
            .with_ymd_and_hms(2026, 3, d, h, 0, 0)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn step(invoice: u128, position: i32, template: &str, due_day: u32) -> OtherStep {
        OtherStep {
            step_id: Uuid::from_u128(invoice * 100 + position as u128),
            invoice_id: Uuid::from_u128(invoice),
            invoice_due_on: NaiveDate::from_ymd_opt(2026, 3, 10).unwrap(),
            currency: "EUR".into(),
            emitted_today: false,
            position,
            channel: Channel::Email,
            template: template.into(),
            due_at: at(due_day, 9),
        }
    }

    const LEAD: Lead<'static> = Lead {
        channel: Channel::Email,
        template: "reminder",
        currency: "EUR",
    };
    const THREE_DAYS: Grouping = Grouping { within_days: 3 };

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, 17).unwrap()
    }

    #[test]
    fn the_same_stage_of_other_overdue_invoices_due_within_the_days_joins() {
        let others = vec![
            step(2, 1, "reminder", 17),
            step(2, 2, "firm_reminder", 24),
            step(3, 1, "reminder", 19),
            step(4, 1, "reminder", 24),
        ];
        let joined = joining(&THREE_DAYS, &LEAD, today(), at(17, 9), Paris, &others);
        let ids: Vec<u128> = joined.iter().map(|j| j.step_id.as_u128()).collect();
        // Invoice 2 today, invoice 3 in two days; invoice 4 is a week away.
        assert_eq!(ids, vec![201, 301]);
        assert!(joined.iter().all(|j| j.overtaken.is_empty()));
        // Within 0 days: only today's.
        let same_day = Grouping { within_days: 0 };
        let ids: Vec<u128> = joining(&same_day, &LEAD, today(), at(17, 9), Paris, &others)
            .iter()
            .map(|j| j.step_id.as_u128())
            .collect();
        assert_eq!(ids, vec![201]);
    }

    #[test]
    fn other_stages_invoices_not_overdue_or_reminded_today_do_not_join() {
        let mut not_due = step(2, 1, "reminder", 17);
        not_due.invoice_due_on = today();
        let mut reminded = step(3, 1, "reminder", 17);
        reminded.emitted_today = true;
        let mut dollars = step(4, 1, "reminder", 17);
        dollars.currency = "USD".into();
        let mut sms = step(5, 1, "reminder", 17);
        sms.channel = Channel::Sms;
        let formal = step(6, 1, "formal_notice", 17);
        let others = vec![not_due, reminded, dollars, sms, formal];
        assert!(joining(&THREE_DAYS, &LEAD, today(), at(17, 9), Paris, &others).is_empty());
        // A lead that is not an email gathers nothing.
        let letter = Lead {
            channel: Channel::Letter,
            ..LEAD
        };
        let others = vec![step(2, 1, "reminder", 17)];
        assert!(joining(&THREE_DAYS, &letter, today(), at(17, 9), Paris, &others).is_empty());
    }

    #[test]
    fn a_step_already_due_overtakes_the_earlier_ones_of_its_invoice() {
        // Invoice 2 arrived late: its reminder (position 1) and firm reminder (position 2,
        // also "reminder" here) are both due; the later joins, the earlier is overtaken.
        let others = vec![
            step(2, 0, "pre_due", 5),
            step(2, 1, "reminder", 12),
            step(2, 2, "reminder", 16),
        ];
        let joined = joining(&THREE_DAYS, &LEAD, today(), at(17, 9), Paris, &others);
        assert_eq!(joined.len(), 1);
        assert_eq!(joined[0].step_id.as_u128(), 202);
        assert_eq!(
            joined[0].overtaken,
            vec![Uuid::from_u128(200), Uuid::from_u128(201)]
        );
    }
}
