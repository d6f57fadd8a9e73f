//! A ledger loaded in bulk (`COPY ... FROM STDIN`) into a migrated database: customers,
//! invoices, their steps planned by the default policy's medium segment
//! (`relance_domain::plan::plan_steps`, as intake plans them), and pauses. Each invoice is
//! in one situation, chosen by its rank:
//! - not due: every step in the future;
//! - due now (email): the pre-due note, or the first or second reminder email, the earlier
//!   steps sent on earlier days (the call skipped: the bench's customers have no phone);
//! - overdue, waiting: sent up to a stage, the next step a few days ahead;
//! - paused (a dispute, or a promise to pay in a week) with steps past their date held back;
//! - hand-off pending: every step done, the formal notice sent two days ago (hand-off later).
//!
//! Every customer is its own (no grouping), outside France (`BE`: weekends are the only
//! days off, and the bench's policy opens every window every day, so a run does not depend
//! on the date) and has neither a phone nor a postal address: every step due in the run is
//! an email. The exception is [`Shape::Channels`]: its customers have both, and each has a
//! text message or a registered letter due.

use anyhow::Context;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use relance_domain::plan::{plan_steps, PlannedStep};
use relance_domain::policy::DunningPolicy;
use relance_domain::Risk;
use serde::Serialize;
use sqlx::postgres::PgPoolCopyExt;
use sqlx::PgPool;
use std::collections::HashMap;
use std::fmt::Write;

/// Which mix of situations the ledger has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The pipeline's: 60% not due, 10% due today (pre-due note), 15% overdue with a
    /// reminder email due, 8% overdue waiting on a later step, 4% paused, 3% hand-off pending.
    Pipeline,
    /// Every invoice in the future.
    Future,
    /// 10% not due, 65% overdue waiting on a later step, 13% paused, 12% hand-off pending.
    Overdue,
    /// A large ledger with few steps due: one invoice in `n` has a reminder email due (the
    /// pre-due note, the first or the second reminder), the others as in `Overdue`. For a
    /// delivery run over a million invoices that lasts minutes, not hours.
    Sparse(u32),
    /// The other channels: every invoice has its text message (the third reminder) or its
    /// registered formal notice due, one in two each; its customer has a mobile number and a
    /// postal address.
    Channels,
}

impl Shape {
    /// The shapes the scheduler pass is timed on, by name.
    pub fn parse_pass(name: &str) -> anyhow::Result<Self> {
        match name {
            "overdue" => Ok(Shape::Overdue),
            "future" => Ok(Shape::Future),
            other => anyhow::bail!("unknown ledger shape {other:?}: expected overdue or future"),
        }
    }

    /// What the shape holds, in words.
    pub fn describe(self) -> String {
        match self {
            Shape::Future => "all in the future".into(),
            Shape::Overdue => "mostly overdue, waiting (later steps, pauses, hand-offs)".into(),
            Shape::Pipeline => "pipeline mix".into(),
            Shape::Sparse(n) => format!("one invoice in {n} due, the others mostly overdue and waiting"),
            Shape::Channels => "a text message or a registered letter due on each".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Situation {
    NotDue,
    Due(usize),
    Waiting(usize),
    Paused,
    HandOffPending,
}

fn situation(shape: Shape, rank: i64) -> Situation {
    let slot = rank % 100;
    let pick = |choices: &[usize]| choices[usize::try_from(rank / 100).unwrap_or(0) % choices.len()];
    match shape {
        Shape::Future => Situation::NotDue,
        Shape::Pipeline => match slot {
            0..=59 => Situation::NotDue,
            60..=69 => Situation::Due(0),
            70..=84 => Situation::Due(pick(&[1, 3])),
            85..=92 => Situation::Waiting(pick(&[0, 1, 3, 4])),
            93..=96 => Situation::Paused,
            _ => Situation::HandOffPending,
        },
        Shape::Sparse(n) if rank % i64::from(n.max(1)) == 0 => {
            let choices = [0, 1, 3];
            Situation::Due(choices[usize::try_from(rank / i64::from(n.max(1))).unwrap_or(0) % choices.len()])
        }
        Shape::Channels => Situation::Due(if rank % 2 == 0 { SMS_STEP } else { LETTER_STEP }),
        Shape::Overdue | Shape::Sparse(_) => match slot {
            0..=9 => Situation::NotDue,
            10..=74 => Situation::Waiting(pick(&[0, 1, 3, 4])),
            75..=87 => Situation::Paused,
            _ => Situation::HandOffPending,
        },
    }
}

/// What was loaded.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Loaded {
    /// [`Shape::describe`].
    pub shape: String,
    pub invoices: i64,
    pub steps: i64,
    pub due_steps: i64,
    pub not_due: i64,
    pub waiting: i64,
    pub paused: i64,
    pub hand_off_pending: i64,
    pub seconds: f64,
    /// Not-due invoices (number, amount) a payment can settle.
    #[serde(skip)]
    pub payable: Vec<(String, String)>,
}

/// Offsets of the medium segment's steps, in days from the due date, by position.
const OFFSETS: [i64; 6] = [-5, 5, 12, 13, 17, 30];
/// Positions of the medium segment's text message and registered formal notice.
const SMS_STEP: usize = 4;
const LETTER_STEP: usize = 5;

struct Tables {
    customers: String,
    invoices: String,
    steps: String,
    pauses: String,
}

/// Loads `invoices` invoices of `shape` at `now`, in chunks of COPY statements.
pub async fn load(db: &PgPool, invoices: i64, shape: Shape, now: DateTime<Utc>) -> anyhow::Result<Loaded> {
    let started = std::time::Instant::now();
    let policy = DunningPolicy::default_policy().context("the default policy")?;
    let tz = chrono_tz::Europe::Paris;
    let today = now.with_timezone(&tz).date_naive();
    let mut plans: HashMap<NaiveDate, Vec<PlannedStep>> = HashMap::new();
    let mut loaded = Loaded {
        shape: shape.describe(),
        invoices,
        ..Loaded::default()
    };
    const CHUNK: i64 = 20_000;
    let mut first = 0;
    while first < invoices {
        let last = (first + CHUNK).min(invoices);
        let mut t = Tables {
            customers: String::new(),
            invoices: String::new(),
            steps: String::new(),
            pauses: String::new(),
        };
        for rank in first..last {
            let situation = situation(shape, rank);
            let due_on = match situation {
                Situation::NotDue => today + Duration::days(6 + rank % 50),
                Situation::Due(stage) => today - Duration::days(OFFSETS[stage]),
                Situation::Waiting(stage) => today - Duration::days(OFFSETS[stage] + 1),
                Situation::Paused => today - Duration::days(20),
                Situation::HandOffPending => today - Duration::days(33),
            };
            let plan = plans
                .entry(due_on)
                .or_insert_with(|| plan_steps(&policy, Risk::Medium, due_on, tz));
            write_invoice(&mut t, rank, situation, due_on, plan, now, &mut loaded)?;
        }
        copy(db, "customers (id, name, contact_name, email, language, timezone, risk, kind, updated_at, country, details_as_of, phone, postal_address)", &t.customers).await?;
        copy(db, "invoices (id, number, customer_id, amount, currency, balance, issued_on, due_on, payment_link, status, created_at, sequence_ended_at)", &t.invoices).await?;
        copy(db, "reminder_steps (id, invoice_id, name, kind, position, channel, template, tone, due_at, status, emitted_at, emitted_on, updated_at, status_changed_at)", &t.steps).await?;
        copy(
            db,
            "invoice_pauses (id, invoice_id, kind, reason, promised_on, until, source, event_id, started_at)",
            &t.pauses,
        )
        .await?;
        first = last;
    }
    for table in ["customers", "invoices", "reminder_steps", "invoice_pauses"] {
        sqlx::query(&format!("ANALYZE {table}"))
            .execute(db)
            .await
            .with_context(|| format!("analyzing {table}"))?;
    }
    loaded.seconds = started.elapsed().as_secs_f64();
    Ok(loaded)
}

async fn copy(db: &PgPool, table: &str, rows: &str) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut copy = db
        .copy_in_raw(&format!("COPY {table} FROM STDIN"))
        .await
        .with_context(|| format!("starting COPY {table}"))?;
    for chunk in rows.as_bytes().chunks(1 << 20) {
        copy.send(chunk).await.with_context(|| format!("COPY {table}"))?;
    }
    copy.finish()
        .await
        .with_context(|| format!("finishing COPY {table}"))?;
    Ok(())
}

/// Whether an invoice's customer has a mobile number and a postal address: those whose text
/// message or registered letter is due.
fn shape_has_contacts(situation: Situation) -> bool {
    matches!(situation, Situation::Due(stage) if stage == SMS_STEP || stage == LETTER_STEP)
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339()
}

fn write_invoice(
    t: &mut Tables,
    rank: i64,
    situation: Situation,
    due_on: NaiveDate,
    plan: &[PlannedStep],
    now: DateTime<Utc>,
    loaded: &mut Loaded,
) -> anyhow::Result<()> {
    // Time-ordered ids, as relance's intake gives invoices and steps (UUIDv7): random ones
    // would spread a large ledger's index entries over every page.
    let id = uuid::Uuid::now_v7();
    let (number, customer) = (format!("B-{rank:09}"), format!("C-{rank:09}"));
    let known = ts(now - Duration::days(60));
    let language = if rank % 3 == 0 { "en" } else { "fr" };
    // Only the other channels' customers can be reached by phone or post: the others' due
    // steps are all emails (and a call step is skipped).
    let (phone, address) = if shape_has_contacts(situation) {
        (
            format!("+3247{:07}", rank % 10_000_000),
            format!("Rue de la Loi {}\\n1000 Bruxelles", 1 + rank % 200),
        )
    } else {
        ("\\N".to_string(), "\\N".to_string())
    };
    writeln!(
        t.customers,
        "{customer}\tClient {rank} SAS\tContact {rank}\tc{rank}@bench.test\t{language}\tEurope/Paris\tmedium\tbusiness\t{known}\tBE\t{known}\t{phone}\t{address}"
    )?;
    let amount = format!("{}.00", 100 + rank % 5000);
    // A finished sequence is in the hand-off's index from when its last step went out, as
    // the scheduler's sweep of `sequence_endings` would have noted it.
    let sequence_ended_at = match situation {
        Situation::HandOffPending => ts(now - Duration::days(2)),
        _ => "\\N".to_string(),
    };
    writeln!(
        t.invoices,
        "{id}\t{number}\t{customer}\t{amount}\tEUR\t{amount}\t{}\t{due_on}\thttps://pay.example.test/i/{number}\topen\t{known}\t{sequence_ended_at}",
        due_on - Duration::days(30)
    )?;
    // The position up to which steps are done, and what becomes of the next.
    let done_up_to: Option<usize> = match situation {
        Situation::NotDue => None,
        Situation::Due(stage) => stage.checked_sub(1),
        Situation::Waiting(stage) => Some(stage),
        Situation::Paused => Some(1),
        Situation::HandOffPending => Some(plan.len().saturating_sub(1)),
    };
    for (position, step) in plan.iter().enumerate() {
        let step_id = uuid::Uuid::now_v7();
        let done = done_up_to.is_some_and(|d| position <= d);
        let mut due_at = step.due_at;
        let (status, emitted) = if done {
            // The last step of a finished sequence went out two days ago (hand-off later).
            let at = if situation == Situation::HandOffPending && position + 1 == plan.len() {
                now - Duration::days(2)
            } else {
                step.due_at.min(now - Duration::days(1))
            };
            due_at = at;
            if step.channel.as_str() == "call" {
                ("skipped", None)
            } else {
                ("sent", Some(at))
            }
        } else if matches!(situation, Situation::Due(stage) if stage == position) {
            due_at = now - Duration::seconds(1 + rank % 300);
            loaded.due_steps += 1;
            ("pending", None)
        } else {
            ("pending", None)
        };
        let changed = emitted.unwrap_or(now - Duration::days(60));
        let (emitted_at, emitted_on) = match emitted {
            Some(at) => (
                ts(at),
                at.with_timezone(&chrono_tz::Europe::Paris)
                    .date_naive()
                    .to_string(),
            ),
            None => ("\\N".to_string(), "\\N".to_string()),
        };
        writeln!(
            t.steps,
            "{step_id}\t{id}\t{}\treminder\t{}\t{}\t{}\t{}\t{}\t{status}\t{emitted_at}\t{emitted_on}\t{}\t{}",
            step.name,
            step.position,
            step.channel.as_str(),
            step.template,
            step.tone.as_str(),
            ts(due_at),
            ts(changed),
            ts(changed),
        )?;
        loaded.steps += 1;
    }
    match situation {
        Situation::NotDue => {
            loaded.not_due += 1;
            if loaded.payable.len() < 1000 {
                loaded.payable.push((number, amount));
            }
        }
        Situation::Due(_) => {}
        Situation::Waiting(_) => loaded.waiting += 1,
        Situation::HandOffPending => loaded.hand_off_pending += 1,
        Situation::Paused => {
            loaded.paused += 1;
            let started = ts(now - Duration::days(3));
            let today = now.with_timezone(&chrono_tz::Europe::Paris).date_naive();
            if rank % 2 == 0 {
                writeln!(
                    t.pauses,
                    "{}\t{id}\tdispute\tgoods damaged\t\\N\t\\N\tdispute.opened\tbench-{rank}\t{started}",
                    uuid::Uuid::new_v4()
                )?;
            } else {
                writeln!(
                    t.pauses,
                    "{}\t{id}\tpromise\tpromised by phone\t{}\t{}\tpromise.recorded\tbench-{rank}\t{started}",
                    uuid::Uuid::new_v4(),
                    today + Duration::days(7),
                    ts(now + Duration::days(10)),
                )?;
            }
        }
    }
    Ok(())
}
