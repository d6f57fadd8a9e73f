//! What the creditor may claim on top of the balance once an invoice is late: interest
//! accrued to date and, for a business, the 40 EUR recovery indemnity (D441-5), with the
//! total. The one computation every channel states (emails, letters, the hand-off), from the
//! same payments and credit notes. Pure: the caller passes the terms, the payments, the day
//! the formal notice took effect and the day; `interest` does the arithmetic.
//!
//! - A business owes interest from the day after the due date (L441-10) at the rate of its
//!   terms, never below the floor, and the indemnity, in euros whatever the invoice's
//!   currency.
//! - A consumer owes interest only from the formal notice (Code civil 1231-6 and 1344-1), at
//!   the legal interest rate, and no indemnity: recovery costs are the creditor's own
//!   (L111-8 CPCE).

use crate::customer::CustomerKind;
use crate::interest::{late_interest, recovery_indemnity, InterestTerms, RateSource};
use chrono::NaiveDate;
use iso_currency::Currency;
use rust_decimal::Decimal;

/// The indemnity of D441-5 is a sum in euros.
pub const INDEMNITY_CURRENCY: Currency = Currency::EUR;

/// The amounts of an invoice a claim is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Debt {
    /// The invoice total.
    pub amount: Decimal,
    /// Sum of its credit notes: they lower the debt itself.
    pub credited: Decimal,
    /// What remains unpaid: `amount - credited - paid`.
    pub balance: Decimal,
    pub due_on: NaiveDate,
    pub currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Interest through the day of the claim, included, rounded half-even to the cent, in
    /// the invoice's currency.
    pub late_interest: Decimal,
    /// The first day interest runs: the day after the due date (a business), the day after
    /// the formal notice took effect (a consumer); `None` while none runs.
    pub interest_from: Option<NaiveDate>,
    /// In euros ([`INDEMNITY_CURRENCY`]): 40 for a business, nothing for a consumer.
    pub recovery_indemnity: Decimal,
    /// Whether `total` includes the indemnity: only when the invoice is in euros, so that
    /// the total adds amounts of one currency.
    pub indemnity_in_total: bool,
    /// Balance + interest (+ the indemnity when the invoice is in euros), in the invoice's
    /// currency.
    pub total: Decimal,
    /// The annual rate of the latest period, in percent, and where it comes from (`None`
    /// when nothing accrued).
    pub rate_percent: Option<Decimal>,
    pub rate_source: Option<RateSource>,
    /// False when a half-year of the period is missing from the rate table (an estimate at
    /// the last known rates).
    pub rates_known: bool,
}

impl Claim {
    /// Whether there is anything to state on top of the balance.
    pub fn adds_anything(&self) -> bool {
        !self.late_interest.is_zero() || !self.recovery_indemnity.is_zero()
    }
}

/// The day a formal notice takes effect: the day it was sent by email, or by post that day
/// plus the days the post takes (its deadline, and a consumer's interest, run from receipt).
pub fn notice_takes_effect(sent_on: NaiveDate, by_post: bool, postal_delivery_days: u32) -> NaiveDate {
    if by_post {
        sent_on
            .checked_add_days(chrono::Days::new(u64::from(postal_delivery_days)))
            .unwrap_or(sent_on)
    } else {
        sent_on
    }
}

/// The claim on `today` (the customer's local date), or `None` while the invoice is not yet
/// late. Interest runs on the invoice net of its credit notes, less each payment from the
/// day it was received (`payments`: value date, amount). `formal_notice_on`: the day a
/// formal notice took effect (sent by email, or delivered by post), if one did.
pub fn claim_on(
    terms: &InterestTerms,
    kind: CustomerKind,
    debt: &Debt,
    payments: &[(NaiveDate, Decimal)],
    formal_notice_on: Option<NaiveDate>,
    today: NaiveDate,
) -> Option<Claim> {
    if today <= debt.due_on {
        return None;
    }
    let accrues_after = match kind {
        CustomerKind::Business => Some(debt.due_on),
        CustomerKind::Consumer => formal_notice_on.map(|notice| notice.max(debt.due_on)),
    };
    let owed = debt.amount - debt.credited;
    let interest = accrues_after
        .map(|after| late_interest(terms, kind, owed, after, payments, today))
        .filter(|b| !b.periods.is_empty());
    let late_interest = interest.as_ref().map_or(Decimal::ZERO, |b| b.total);
    let last = interest.as_ref().and_then(|b| b.periods.last());
    let indemnity = recovery_indemnity(kind);
    let indemnity_in_total = debt.currency == INDEMNITY_CURRENCY;
    let total = debt.balance
        + late_interest
        + if indemnity_in_total {
            indemnity
        } else {
            Decimal::ZERO
        };
    Some(Claim {
        late_interest,
        interest_from: interest.as_ref().and_then(|b| b.periods.first()).map(|p| p.from),
        recovery_indemnity: indemnity,
        indemnity_in_total,
        total,
        rate_percent: last.map(|p| p.annual_rate_percent),
        rate_source: last.map(|p| p.source),
        rates_known: interest
            .as_ref()
            .is_none_or(|b| b.periods.iter().all(|p| p.rates_known)),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn terms(contract: Option<i64>) -> InterestTerms {
        InterestTerms::statutory().for_customer(contract.map(Decimal::from))
    }

    fn debt(amount: i64, credited: i64, balance: i64) -> Debt {
        Debt {
            amount: Decimal::from(amount),
            credited: Decimal::from(credited),
            balance: Decimal::from(balance),
            due_on: date(2026, 3, 16),
            currency: Currency::EUR,
        }
    }

    #[test]
    fn nothing_is_claimed_until_the_day_after_the_due_date() {
        let t = terms(Some(12));
        let d = debt(1500, 0, 1500);
        assert_eq!(
            claim_on(&t, CustomerKind::Business, &d, &[], None, date(2026, 3, 16)),
            None
        );
        let first = claim_on(&t, CustomerKind::Business, &d, &[], None, date(2026, 3, 17)).unwrap();
        // 1500 × 12 % × 1 day / 365 = 0.4931… → 0.49.
        assert_eq!(first.late_interest, Decimal::new(49, 2));
        assert_eq!(first.recovery_indemnity, Decimal::from(40));
        assert_eq!(first.total, Decimal::new(154049, 2));
        assert_eq!(first.rate_percent, Some(Decimal::from(12)));
    }

    #[test]
    fn a_business_owes_interest_on_what_is_left_and_the_indemnity() {
        // 1000 due 16 March, credit note 100, 400 paid on 22 March, claimed on 15 April:
        // 900 × 12 % × 5 days (17–21 March) + 500 × 12 % × 25 days (22 March–15 April),
        // / 36 500 = (54 000 + 150 000) / 36 500 = 5.5890… → 5.59.
        let claim = claim_on(
            &terms(Some(12)),
            CustomerKind::Business,
            &debt(1000, 100, 500),
            &[(date(2026, 3, 22), Decimal::from(400))],
            None,
            date(2026, 4, 15),
        )
        .unwrap();
        assert_eq!(claim.late_interest, Decimal::new(559, 2));
        assert_eq!(claim.total, Decimal::new(54559, 2));
    }

    #[test]
    fn a_consumer_owes_interest_only_from_the_formal_notice_at_the_legal_rate() {
        let t = terms(Some(12));
        let d = debt(1500, 0, 1500);
        // Before any notice: the balance, nothing on top.
        let before = claim_on(&t, CustomerKind::Consumer, &d, &[], None, date(2026, 4, 15)).unwrap();
        assert_eq!(before.late_interest, Decimal::ZERO);
        assert_eq!(before.recovery_indemnity, Decimal::ZERO);
        assert_eq!(before.total, Decimal::from(1500));
        assert!(!before.adds_anything());
        // Notice on 15 April; on 15 May, 30 days at 2026-H1's legal rate for other cases
        // (2.62 %), whatever the contract says: 1500 × 2.62 × 30 / 36 500 = 3.2301… → 3.23.
        let after = claim_on(
            &t,
            CustomerKind::Consumer,
            &d,
            &[],
            Some(date(2026, 4, 15)),
            date(2026, 5, 15),
        )
        .unwrap();
        assert_eq!(after.interest_from, Some(date(2026, 4, 16)));
        assert_eq!(after.late_interest, Decimal::new(323, 2));
        assert_eq!(after.rate_source, Some(RateSource::Legal));
        assert_eq!(after.total, Decimal::new(150323, 2));
    }

    #[test]
    fn the_indemnity_is_in_euros_and_left_out_of_a_total_in_another_currency() {
        let d = Debt {
            currency: Currency::GBP,
            ..debt(1500, 0, 1500)
        };
        let c = claim_on(
            &terms(Some(12)),
            CustomerKind::Business,
            &d,
            &[],
            None,
            date(2026, 3, 17),
        )
        .unwrap();
        assert_eq!(c.recovery_indemnity, Decimal::from(40));
        assert!(!c.indemnity_in_total);
        assert_eq!(c.total, Decimal::new(150049, 2));
    }
}
