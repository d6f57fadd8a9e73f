//! What the creditor may claim on top of the balance once an invoice is late: interest
//! accrued to date (Code de commerce L441-10, or the consumer rate) and, for a business, the
//! 40 EUR recovery indemnity (D441-5), with the total. Stated in the firm reminders and the
//! formal notice whatever the channel, and handed over with the invoice at hand-off. Pure:
//! the caller passes the terms, the payments and the day; `interest` does the arithmetic.

use crate::customer::CustomerKind;
use crate::interest::{late_interest, recovery_indemnity, InterestTerms};
use chrono::NaiveDate;
use rust_decimal::Decimal;

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Interest from the day after the due date through the day of the claim, included,
    /// rounded half-even to the cent.
    pub late_interest: Decimal,
    pub recovery_indemnity: Decimal,
    /// Balance + interest + indemnity.
    pub total: Decimal,
    /// The annual rate of the latest period, in percent (`None` when nothing accrued).
    pub rate_percent: Option<Decimal>,
}

/// The claim on `today` (the customer's local date), or `None` while the invoice is not yet
/// late. Interest runs on the invoice net of its credit notes, less each payment from the
/// day it was received (`payments`: value date, amount).
pub fn claim_on(
    terms: &InterestTerms,
    kind: CustomerKind,
    debt: &Debt,
    payments: &[(NaiveDate, Decimal)],
    today: NaiveDate,
) -> Option<Claim> {
    if today <= debt.due_on {
        return None;
    }
    let owed = debt.amount - debt.credited;
    let interest = late_interest(terms, kind, owed, debt.due_on, payments, today);
    let indemnity = recovery_indemnity(kind);
    Some(Claim {
        late_interest: interest.total,
        recovery_indemnity: indemnity,
        total: debt.balance + interest.total + indemnity,
        rate_percent: interest.periods.last().map(|p| p.annual_rate_percent),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::interest::RateBasis;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn terms(contract: Option<i64>) -> InterestTerms {
        let mut terms = InterestTerms::statutory(Decimal::new(828, 2), Decimal::new(665, 2));
        if let Some(rate) = contract {
            terms.basis = RateBasis::Contractual {
                rate_percent: Decimal::from(rate),
            };
        }
        terms
    }

    fn debt(amount: i64, credited: i64, balance: i64) -> Debt {
        Debt {
            amount: Decimal::from(amount),
            credited: Decimal::from(credited),
            balance: Decimal::from(balance),
            due_on: date(2026, 3, 16),
        }
    }

    #[test]
    fn nothing_is_claimed_until_the_day_after_the_due_date() {
        let t = terms(Some(12));
        let d = debt(1500, 0, 1500);
        assert_eq!(
            claim_on(&t, CustomerKind::Business, &d, &[], date(2026, 3, 16)),
            None
        );
        let first = claim_on(&t, CustomerKind::Business, &d, &[], date(2026, 3, 17)).unwrap();
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
            date(2026, 4, 15),
        )
        .unwrap();
        assert_eq!(claim.late_interest, Decimal::new(559, 2));
        assert_eq!(claim.total, Decimal::new(54559, 2));
    }

    #[test]
    fn a_consumer_owes_the_consumer_rate_and_no_indemnity() {
        // 1500 × 6.65 % × 30 days / 36 500 = 8.1986… → 8.20.
        let claim = claim_on(
            &terms(Some(12)),
            CustomerKind::Consumer,
            &debt(1500, 0, 1500),
            &[],
            date(2026, 4, 15),
        )
        .unwrap();
        assert_eq!(claim.late_interest, Decimal::new(820, 2));
        assert_eq!(claim.recovery_indemnity, Decimal::ZERO);
        assert_eq!(claim.total, Decimal::new(150820, 2));
    }
}
