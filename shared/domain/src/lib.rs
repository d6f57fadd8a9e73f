//! The dunning domain: pure rules, no I/O and no async. Money, customers, the policy file,
//! the plan of reminder steps, catch-up triage, inbound validation and the clock.

pub mod calendar;
pub mod calls;
pub mod claim;
pub mod clock;
pub mod collections;
pub mod creditor;
pub mod customer;
pub mod fallback;
pub mod grouping;
pub mod interest;
pub mod legal_rates;
pub mod locale;
pub mod money;
pub mod plan;
pub mod policy;
pub mod repeats;
pub mod sms;
pub mod validation;
pub mod window;

pub use calendar::{
    calendar_for, calendar_for_customer, is_business_day, FrenchCalendar, HolidayCalendar, WeekendsOnly,
};
pub use clock::{Clock, SharedClock, SimulatedClock, SystemClock};
pub use customer::{Channel, CustomerKind, Language, Risk};
pub use fallback::{choose_channel, ChannelChoice, Reach};
pub use interest::{
    late_interest, recovery_indemnity, InterestBreakdown, InterestTerms, RateBasis, RateTable,
};
pub use money::Money;
pub use plan::{
    plan_invoice, plan_steps, replan, send_decision, triage_due, triage_pending, ExcludedStep, ExistingStep,
    Plan, PlanInput, PlannedStep, Replan, SendDecision, StepCandidate, Triage,
};
pub use policy::{
    DunningPolicy, Grouping, PolicyError, StepConditions, StepKind, StepTemplate, TemplateUse, Tone,
};
pub use validation::{
    validate_customer, validate_invoice, validate_payment, DroppedField, NewCustomer, NewInvoice, NewPayment,
    Rejection,
};
pub use window::{next_opening, SendWindow};

#[cfg(test)]
mod test_support;
