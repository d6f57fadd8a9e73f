//! Payment plans (échéancier): the rules, without I/O. Validation of an agreed plan (its
//! own fields, then against the invoices it covers), the plan's own schedule of notes (a
//! pre-due note before each instalment, reminders after a missed one, each dated from the
//! instalment's own due date), the allocation of payments to instalments in order, and when
//! a missed instalment breaks the plan. Callers load the plan and its invoices and apply
//! what these functions decide.

use super::validate::{free_text, MAX_REASON_CHARS};
use crate::money::{Currency, Money};
use crate::validation::{positive_money, required_text, Rejection};
use crate::window::local_instant;
use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use std::fmt;
use std::str::FromStr;

/// Fewest instalments of a plan: one is a promise to pay.
pub const MIN_INSTALMENTS: usize = 2;
/// Most instalments of a plan.
pub const MAX_INSTALMENTS: usize = 60;
/// Most invoices one plan covers.
pub const MAX_PLAN_INVOICES: usize = 50;
/// The last instalment is at most this many days after the plan is agreed.
pub const MAX_PLAN_DAYS: i64 = 3 * 365;

/// What the policy's `[payment_plans]` section sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentPlanRules {
    /// Days after an instalment's due date before an unpaid instalment breaks the plan.
    pub grace_days: u32,
    /// Days before each instalment's due date the note announcing it goes out (0: none).
    pub notice_days_before: u32,
    /// Days after an unpaid instalment's due date its reminders go out (each within the
    /// grace days).
    pub reminder_days_after: Vec<u32>,
}

/// Default grace of a missed instalment.
pub const DEFAULT_PLAN_GRACE_DAYS: u32 = 10;

impl Default for PaymentPlanRules {
    fn default() -> Self {
        Self {
            grace_days: DEFAULT_PLAN_GRACE_DAYS,
            notice_days_before: 5,
            reminder_days_after: vec![3],
        }
    }
}

/// One instalment: what is due on which day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instalment {
    pub due_on: NaiveDate,
    pub amount: Decimal,
}

/// A plan whose own fields are valid (its invoices not yet checked).
#[derive(Debug, Clone, PartialEq)]
pub struct NewPaymentPlan {
    pub id: String,
    pub customer_id: String,
    /// In the order given, without repeats.
    pub invoice_numbers: Vec<String>,
    pub instalments: Vec<Instalment>,
    pub currency: Currency,
    pub note: Option<String>,
}

impl NewPaymentPlan {
    pub fn total(&self) -> Decimal {
        self.instalments.iter().map(|i| i.amount).sum()
    }
}

/// The plain fields of a `payment_plan.agreed` (amounts as the wire gives them).
pub struct PaymentPlanFields<'a> {
    pub id: &'a str,
    pub customer_id: &'a str,
    pub invoice_numbers: &'a [String],
    /// (due date, amount) of each instalment.
    pub instalments: &'a [(Option<NaiveDate>, &'a str)],
    pub currency: &'a str,
    pub note: Option<&'a str>,
}

/// Checks a plan's own fields: at least two instalments, each positive in the plan's
/// currency, dates strictly increasing; one to fifty invoices, none twice.
pub fn validate_payment_plan(f: PaymentPlanFields<'_>) -> Result<NewPaymentPlan, Rejection> {
    let id = required_text("plan.id", f.id, 64)?;
    let customer_id = required_text("plan.customer_id", f.customer_id, 64)?;
    if f.invoice_numbers.is_empty() {
        return Err(Rejection::new("plan.invoice_numbers", "names no invoice"));
    }
    if f.invoice_numbers.len() > MAX_PLAN_INVOICES {
        return Err(Rejection::new(
            "plan.invoice_numbers",
            format!("names more than {MAX_PLAN_INVOICES} invoices"),
        ));
    }
    let mut invoice_numbers: Vec<String> = Vec::new();
    for (i, number) in f.invoice_numbers.iter().enumerate() {
        let number = required_text(&format!("plan.invoice_numbers[{i}]"), number, 64)?;
        if invoice_numbers.contains(&number) {
            return Err(Rejection::new(
                &format!("plan.invoice_numbers[{i}]"),
                format!("{number} is named twice"),
            ));
        }
        invoice_numbers.push(number);
    }
    let currency =
        Money::parse_currency(f.currency.trim()).map_err(|m| Rejection::new("plan.currency", m))?;
    if f.instalments.len() < MIN_INSTALMENTS {
        return Err(Rejection::new(
            "plan.instalments",
            format!(
                "has {} instalment(s): a plan has at least {MIN_INSTALMENTS} (one is a promise to pay)",
                f.instalments.len()
            ),
        ));
    }
    if f.instalments.len() > MAX_INSTALMENTS {
        return Err(Rejection::new(
            "plan.instalments",
            format!("has more than {MAX_INSTALMENTS} instalments"),
        ));
    }
    let mut instalments: Vec<Instalment> = Vec::new();
    for (i, (due_on, amount)) in f.instalments.iter().enumerate() {
        let field = format!("plan.instalments[{i}]");
        let due_on = due_on.ok_or_else(|| Rejection::new(&format!("{field}.due_on"), "is required"))?;
        let amount = positive_money(&format!("{field}.amount"), amount, currency.code())?.amount;
        if let Some(previous) = instalments.last() {
            if due_on <= previous.due_on {
                return Err(Rejection::new(
                    &format!("{field}.due_on"),
                    format!(
                        "{due_on} is not after the previous instalment's {}: dates must strictly increase",
                        previous.due_on
                    ),
                ));
            }
        }
        instalments.push(Instalment { due_on, amount });
    }
    Ok(NewPaymentPlan {
        id,
        customer_id,
        invoice_numbers,
        instalments,
        currency,
        note: free_text("plan.note", f.note, MAX_REASON_CHARS)?,
    })
}

/// An invoice a plan covers, as the consumer read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanInvoice<'a> {
    pub number: &'a str,
    pub customer_id: &'a str,
    pub currency: &'a str,
    pub balance: Decimal,
    /// Still chased (not settled, closed or handed off).
    pub open: bool,
    /// Already under another plan that holds.
    pub in_plan: Option<&'a str>,
}

/// Checks a valid plan against its invoices and today (the customer's day): one customer,
/// the plan's currency, open, not under another plan, the instalments summing to their
/// balance, the first instalment not before today and the last within [`MAX_PLAN_DAYS`].
pub fn check_plan_against(
    plan: &NewPaymentPlan,
    invoices: &[PlanInvoice<'_>],
    today: NaiveDate,
) -> Result<(), Rejection> {
    check_plan_dates(plan, today)?;
    for invoice in invoices {
        let number = invoice.number;
        if invoice.customer_id != plan.customer_id {
            return Err(Rejection::new(
                "plan.invoice_numbers",
                format!(
                    "invoice {number} is customer {}'s, not {}'s",
                    invoice.customer_id, plan.customer_id
                ),
            ));
        }
        if invoice.currency.trim() != plan.currency.code() {
            return Err(Rejection::new(
                "plan.currency",
                format!(
                    "{} differs from invoice {number}'s currency {}",
                    plan.currency.code(),
                    invoice.currency.trim()
                ),
            ));
        }
        if !invoice.open {
            return Err(Rejection::new(
                "plan.invoice_numbers",
                format!("invoice {number} is no longer chased"),
            ));
        }
        if let Some(other) = invoice.in_plan {
            return Err(Rejection::new(
                "plan.invoice_numbers",
                format!("invoice {number} is already under payment plan {other}"),
            ));
        }
    }
    let balance: Decimal = invoices.iter().map(|i| i.balance).sum();
    let total = plan.total();
    if total != balance {
        return Err(Rejection::new(
            "plan.instalments",
            format!(
                "sum to {total} {} but the balance of the invoices is {balance}",
                plan.currency.code()
            ),
        ));
    }
    Ok(())
}

/// The dates of a plan against today (the customer's day): also what the CLI checks.
pub fn check_plan_dates(plan: &NewPaymentPlan, today: NaiveDate) -> Result<(), Rejection> {
    if let Some(first) = plan.instalments.first() {
        if first.due_on < today {
            return Err(Rejection::new(
                "plan.instalments[0].due_on",
                format!(
                    "{} is already past (today is {today} in the customer's time zone)",
                    first.due_on
                ),
            ));
        }
    }
    if let Some(last) = plan.instalments.last() {
        if (last.due_on - today).num_days() > MAX_PLAN_DAYS {
            return Err(Rejection::new(
                "plan.instalments",
                format!(
                    "the last one, {}, is more than {MAX_PLAN_DAYS} days away",
                    last.due_on
                ),
            ));
        }
    }
    Ok(())
}

/// A note of the plan's own schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanNoteKind {
    /// Before the instalment's due date.
    PreDue,
    /// After it, while the instalment is unpaid (the n-th reminder, from 1).
    Reminder(u32),
}

/// One note of the plan's schedule: about instalment `position` (from 1), at `due_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanNote {
    pub position: u32,
    pub kind: PlanNoteKind,
    /// The step's name: `plan_2_pre_due`, `plan_2_reminder_1`.
    pub name: String,
    pub template: &'static str,
    pub due_at: DateTime<Utc>,
}

/// The template of the note before an instalment.
pub const PLAN_PRE_DUE_TEMPLATE: &str = "plan_pre_due";
/// The template of a reminder after a missed instalment.
pub const PLAN_REMINDER_TEMPLATE: &str = "plan_reminder";

/// The plan's notes, dated from each instalment's own due date at `send_time` in the
/// customer's time zone. A pre-due note whose day is already past at `now` is left out (the
/// plan was agreed too close to the instalment for it); so is a reminder past the grace.
pub fn plan_notes(
    instalments: &[Instalment],
    rules: &PaymentPlanRules,
    tz: Tz,
    send_time: NaiveTime,
    now: DateTime<Utc>,
) -> Vec<PlanNote> {
    let mut notes = Vec::new();
    for (index, instalment) in instalments.iter().enumerate() {
        let position = u32::try_from(index + 1).unwrap_or(u32::MAX);
        if rules.notice_days_before > 0 {
            if let Some(day) = instalment
                .due_on
                .checked_sub_days(Days::new(u64::from(rules.notice_days_before)))
            {
                let due_at = local_instant(tz, day, send_time);
                if due_at >= now {
                    notes.push(PlanNote {
                        position,
                        kind: PlanNoteKind::PreDue,
                        name: format!("plan_{position}_pre_due"),
                        template: PLAN_PRE_DUE_TEMPLATE,
                        due_at,
                    });
                }
            }
        }
        for (n, days) in rules.reminder_days_after.iter().enumerate() {
            let n = u32::try_from(n + 1).unwrap_or(u32::MAX);
            if *days == 0 || *days > rules.grace_days {
                continue;
            }
            if let Some(day) = instalment.due_on.checked_add_days(Days::new(u64::from(*days))) {
                notes.push(PlanNote {
                    position,
                    kind: PlanNoteKind::Reminder(n),
                    name: format!("plan_{position}_reminder_{n}"),
                    template: PLAN_REMINDER_TEMPLATE,
                    due_at: local_instant(tz, day, send_time),
                });
            }
        }
    }
    notes
}

/// When an instalment still unpaid breaks the plan: the start of the day after its grace
/// days, in the customer's time zone.
pub fn breaks_at(due_on: NaiveDate, grace_days: u32, tz: Tz) -> DateTime<Utc> {
    let day = due_on
        .checked_add_days(Days::new(u64::from(grace_days) + 1))
        .unwrap_or(due_on);
    local_instant(tz, day, NaiveTime::MIN)
}

/// An instalment as stored: what it asks and what payments covered so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstalmentState {
    pub amount: Decimal,
    pub paid: Decimal,
}

impl InstalmentState {
    pub fn is_paid(&self) -> bool {
        self.paid >= self.amount
    }
}

/// What a payment does to the instalments: the new `paid` of each one it touched
/// (index, paid), which became fully paid, and whether every instalment now is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Allocation {
    pub changed: Vec<(usize, Decimal)>,
    pub newly_paid: Vec<usize>,
    pub completed: bool,
    /// What is left over after the last instalment (a payment beyond the plan's total).
    pub unallocated: Decimal,
}

/// Allocates `amount` to the instalments in order, oldest first.
pub fn allocate(instalments: &[InstalmentState], amount: Decimal) -> Allocation {
    let mut left = amount;
    let mut allocation = Allocation::default();
    for (index, instalment) in instalments.iter().enumerate() {
        if left <= Decimal::ZERO {
            break;
        }
        let owed = instalment.amount - instalment.paid;
        if owed <= Decimal::ZERO {
            continue;
        }
        let applied = owed.min(left);
        left -= applied;
        let paid = instalment.paid + applied;
        allocation.changed.push((index, paid));
        if paid >= instalment.amount {
            allocation.newly_paid.push(index);
        }
    }
    allocation.completed = instalments
        .iter()
        .enumerate()
        .all(|(index, i)| i.is_paid() || allocation.newly_paid.contains(&index));
    allocation.unallocated = left;
    allocation
}

/// The status of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    /// Agreed and holding the invoices' own sequence.
    Active,
    /// Every instalment paid.
    Completed,
    /// An instalment missed beyond the grace: the invoices' sequence resumed.
    Broken,
}

impl PlanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::Active => "active",
            PlanStatus::Completed => "completed",
            PlanStatus::Broken => "broken",
        }
    }
}

impl fmt::Display for PlanStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PlanStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "active" => Ok(PlanStatus::Active),
            "completed" => Ok(PlanStatus::Completed),
            "broken" => Ok(PlanStatus::Broken),
            other => Err(format!(
                "unknown payment plan status {other:?} (expected active, completed or broken)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn d(m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, m, day).unwrap()
    }

    fn fields<'a>(
        invoices: &'a [String],
        instalments: &'a [(Option<NaiveDate>, &'a str)],
    ) -> PaymentPlanFields<'a> {
        PaymentPlanFields {
            id: "PLAN-1",
            customer_id: "C-1",
            invoice_numbers: invoices,
            instalments,
            currency: "EUR",
            note: Some("agreed by phone"),
        }
    }

    fn invoices() -> Vec<String> {
        vec!["F-1".to_string()]
    }

    #[test]
    fn a_plan_needs_two_instalments_in_strictly_increasing_order() {
        let inv = invoices();
        let one = [(Some(d(7, 15)), "1000.00")];
        assert!(validate_payment_plan(fields(&inv, &one))
            .unwrap_err()
            .reason
            .contains("at least 2"));
        let same_day = [(Some(d(7, 15)), "500.00"), (Some(d(7, 15)), "500.00")];
        let r = validate_payment_plan(fields(&inv, &same_day)).unwrap_err();
        assert_eq!(r.field, "plan.instalments[1].due_on");
        let zero = [(Some(d(7, 15)), "0"), (Some(d(8, 15)), "500.00")];
        assert_eq!(
            validate_payment_plan(fields(&inv, &zero)).unwrap_err().field,
            "plan.instalments[0].amount"
        );
        let ok = [(Some(d(7, 15)), "500.00"), (Some(d(8, 15)), "500.00")];
        let plan = validate_payment_plan(fields(&inv, &ok)).unwrap();
        assert_eq!(plan.total(), Decimal::new(100000, 2));
    }

    #[test]
    fn the_instalments_must_sum_to_the_balance_of_open_invoices_of_one_customer() {
        let inv = invoices();
        let ok = [(Some(d(7, 15)), "500.00"), (Some(d(8, 15)), "400.00")];
        let plan = validate_payment_plan(fields(&inv, &ok)).unwrap();
        let invoice = PlanInvoice {
            number: "F-1",
            customer_id: "C-1",
            currency: "EUR",
            balance: Decimal::new(100000, 2),
            open: true,
            in_plan: None,
        };
        let r = check_plan_against(&plan, std::slice::from_ref(&invoice), d(7, 1)).unwrap_err();
        assert!(r.reason.contains("sum to 900.00 EUR"), "{r}");
        let balanced = PlanInvoice {
            balance: Decimal::new(90000, 2),
            ..invoice.clone()
        };
        assert!(check_plan_against(&plan, std::slice::from_ref(&balanced), d(7, 1)).is_ok());
        let past = check_plan_against(&plan, std::slice::from_ref(&balanced), d(7, 16)).unwrap_err();
        assert!(past.reason.contains("already past"));
        let other = PlanInvoice {
            customer_id: "C-2",
            ..balanced.clone()
        };
        assert!(check_plan_against(&plan, &[other], d(7, 1)).is_err());
        let dollars = PlanInvoice {
            currency: "USD",
            ..balanced
        };
        assert_eq!(
            check_plan_against(&plan, &[dollars], d(7, 1)).unwrap_err().field,
            "plan.currency"
        );
    }

    #[test]
    fn payments_go_to_the_oldest_instalment_first() {
        let s = |amount: i64, paid: i64| InstalmentState {
            amount: Decimal::from(amount),
            paid: Decimal::from(paid),
        };
        let plan = [s(500, 0), s(300, 0), s(200, 0)];
        let a = allocate(&plan, Decimal::from(600));
        assert_eq!(a.changed, vec![(0, Decimal::from(500)), (1, Decimal::from(100))]);
        assert_eq!(a.newly_paid, vec![0]);
        assert!(!a.completed);
        let later = [s(500, 500), s(300, 100), s(200, 0)];
        let b = allocate(&later, Decimal::from(400));
        assert_eq!(b.newly_paid, vec![1, 2]);
        assert!(b.completed);
        assert_eq!(b.unallocated, Decimal::ZERO);
    }

    #[test]
    fn each_note_is_dated_from_its_own_instalment() {
        let tz: Tz = "Europe/Paris".parse().unwrap();
        let at9 = NaiveTime::from_hms_opt(9, 0, 0).unwrap();
        let instalments = [
            Instalment {
                due_on: d(7, 15),
                amount: Decimal::from(500),
            },
            Instalment {
                due_on: d(8, 14),
                amount: Decimal::from(500),
            },
        ];
        let now = local_instant(tz, d(7, 1), NaiveTime::MIN);
        let notes = plan_notes(&instalments, &PaymentPlanRules::default(), tz, at9, now);
        let names: Vec<(&str, NaiveDate)> = notes
            .iter()
            .map(|n| (n.name.as_str(), n.due_at.with_timezone(&tz).date_naive()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("plan_1_pre_due", d(7, 10)),
                ("plan_1_reminder_1", d(7, 18)),
                ("plan_2_pre_due", d(8, 9)),
                ("plan_2_reminder_1", d(8, 17)),
            ]
        );
        // Agreed too close to the first instalment for its note.
        let late = local_instant(tz, d(7, 12), NaiveTime::MIN);
        let notes = plan_notes(&instalments, &PaymentPlanRules::default(), tz, at9, late);
        assert_eq!(notes[0].name, "plan_1_reminder_1");
        assert_eq!(
            breaks_at(d(7, 15), 10, tz),
            local_instant(tz, d(7, 26), NaiveTime::MIN)
        );
    }
}
