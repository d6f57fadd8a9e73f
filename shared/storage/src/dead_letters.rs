//! Dead letters kept in PostgreSQL (`dead_letters`): recording a message taken off the
//! dead-letter queue (once, whoever drains it), listing and reading them, and the guarded
//! status changes of a replay or a discard, each journaled. Publishing a replay is the
//! transport's job (`relance_messaging::dead_letters`); nothing here talks to the broker.

use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

/// Journal action of a dead letter republished to its original exchange.
pub const JOURNAL_REPLAYED: &str = "dead_letter.replayed";
/// Journal action of a dead letter set aside by an operator (its record stays).
pub const JOURNAL_DISCARDED: &str = "dead_letter.discarded";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterStatus {
    /// Waiting for an operator.
    Pending,
    /// Republished once to its original exchange and routing key.
    Replayed,
    /// Set aside; kept as a record.
    Discarded,
}

impl DeadLetterStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Replayed => "replayed",
            Self::Discarded => "discarded",
        }
    }
}

impl std::str::FromStr for DeadLetterStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pending" => Ok(Self::Pending),
            "replayed" => Ok(Self::Replayed),
            "discarded" => Ok(Self::Discarded),
            other => Err(format!(
                "{other:?} is not a dead letter status (pending, replayed, discarded)"
            )),
        }
    }
}

impl std::fmt::Display for DeadLetterStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message as taken off the dead-letter queue, to record.
#[derive(Debug, Clone)]
pub struct NewDeadLetter {
    pub delivery_key: String,
    /// For a message redelivered without an id of its own: the prefix of the key it was
    /// recorded under if it already was (its content's hash), so it is not recorded twice.
    pub recorded_under: Option<String>,
    pub queue: Option<String>,
    pub exchange: String,
    pub routing_key: String,
    pub reason: String,
    pub message_id: Option<String>,
    pub properties: serde_json::Value,
    pub headers: serde_json::Value,
    pub body: Vec<u8>,
    pub dead_lettered_at: DateTime<Utc>,
    pub replay_of: Option<i64>,
}

/// A recorded dead letter.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub queue: Option<String>,
    pub exchange: String,
    pub routing_key: String,
    pub reason: String,
    pub message_id: Option<String>,
    pub properties: serde_json::Value,
    pub headers: serde_json::Value,
    #[serde(skip)]
    pub body: Vec<u8>,
    pub dead_lettered_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub status: DeadLetterStatus,
    pub replay_of: Option<i64>,
    pub replayed_at: Option<DateTime<Utc>>,
    pub discarded_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct DeadLetterRow {
    id: i64,
    queue: Option<String>,
    exchange: String,
    routing_key: String,
    reason: String,
    message_id: Option<String>,
    properties: serde_json::Value,
    headers: serde_json::Value,
    body: Vec<u8>,
    dead_lettered_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
    status: String,
    replay_of: Option<i64>,
    replayed_at: Option<DateTime<Utc>>,
    discarded_at: Option<DateTime<Utc>>,
}

impl TryFrom<DeadLetterRow> for DeadLetter {
    type Error = anyhow::Error;
    fn try_from(r: DeadLetterRow) -> anyhow::Result<Self> {
        let status = r
            .status
            .parse()
            .map_err(|e: String| anyhow!("dead letter {}: {e}", r.id))?;
        Ok(Self {
            id: r.id,
            queue: r.queue,
            exchange: r.exchange,
            routing_key: r.routing_key,
            reason: r.reason,
            message_id: r.message_id,
            properties: r.properties,
            headers: r.headers,
            body: r.body,
            dead_lettered_at: r.dead_lettered_at,
            recorded_at: r.recorded_at,
            status,
            replay_of: r.replay_of,
            replayed_at: r.replayed_at,
            discarded_at: r.discarded_at,
        })
    }
}

const COLUMNS: &str = "id, queue, exchange, routing_key, reason, message_id, properties, headers, body,
    dead_lettered_at, recorded_at, status, replay_of, replayed_at, discarded_at";

/// Records a dead letter; `None` when this dead-lettering is already recorded (a
/// redelivery after a crash between commit and ack, or another drainer got it first).
pub async fn record(
    conn: &mut PgConnection,
    letter: &NewDeadLetter,
    recorded_at: DateTime<Utc>,
) -> anyhow::Result<Option<i64>> {
    if let Some(prefix) = &letter.recorded_under {
        let recorded: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM dead_letters WHERE starts_with(delivery_key, $1))",
        )
        .bind(prefix)
        .fetch_one(&mut *conn)
        .await
        .context("looking for a dead letter already recorded")?;
        if recorded {
            return Ok(None);
        }
    }
    sqlx::query_scalar(
        "INSERT INTO dead_letters (delivery_key, queue, exchange, routing_key, reason, message_id,
             properties, headers, body, dead_lettered_at, recorded_at, replay_of)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
                 (SELECT id FROM dead_letters WHERE id = $12))
         ON CONFLICT (delivery_key) DO NOTHING
         RETURNING id",
    )
    .bind(&letter.delivery_key)
    .bind(&letter.queue)
    .bind(&letter.exchange)
    .bind(&letter.routing_key)
    .bind(&letter.reason)
    .bind(&letter.message_id)
    .bind(&letter.properties)
    .bind(&letter.headers)
    .bind(&letter.body)
    .bind(letter.dead_lettered_at)
    .bind(recorded_at)
    .bind(letter.replay_of)
    .fetch_optional(conn)
    .await
    .context("recording a dead letter")
}

/// Which dead letters to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this status (`None`: all).
    pub status: Option<DeadLetterStatus>,
    /// Only those whose reason matches (see [`reason_like`]).
    pub reason: Option<String>,
    /// Only those older than this id (keyset pagination, newest first).
    pub before: Option<i64>,
    pub limit: i64,
}

/// A reason pattern as SQL `ILIKE`: `*` matches anything; without `*`, the pattern may
/// appear anywhere in the reason. Case-insensitive; `%` and `_` are taken literally.
pub fn reason_like(pattern: &str) -> String {
    let escaped = pattern
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    if escaped.contains('*') {
        escaped.replace('*', "%")
    } else {
        format!("%{escaped}%")
    }
}

/// Dead letters, newest first.
pub async fn list(db: &PgPool, filter: &Filter) -> anyhow::Result<Vec<DeadLetter>> {
    let rows: Vec<DeadLetterRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM dead_letters
         WHERE ($1::text IS NULL OR status = $1)
           AND ($2::text IS NULL OR reason ILIKE $2)
           AND ($3::bigint IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4"
    ))
    .bind(filter.status.map(DeadLetterStatus::as_str))
    .bind(filter.reason.as_deref().map(reason_like))
    .bind(filter.before)
    .bind(filter.limit)
    .fetch_all(db)
    .await
    .context("listing dead letters")?;
    rows.into_iter().map(DeadLetter::try_from).collect()
}

pub async fn get(db: &PgPool, id: i64) -> anyhow::Result<Option<DeadLetter>> {
    let row: Option<DeadLetterRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM dead_letters WHERE id = $1"))
            .bind(id)
            .fetch_optional(db)
            .await
            .with_context(|| format!("reading dead letter {id}"))?;
    row.map(DeadLetter::try_from).transpose()
}

/// Ids of the pending dead letters whose reason matches `pattern` (see [`reason_like`]),
/// oldest first, so that a replay of them all keeps their order.
pub async fn pending_matching(db: &PgPool, pattern: &str) -> anyhow::Result<Vec<i64>> {
    sqlx::query_scalar("SELECT id FROM dead_letters WHERE status = 'pending' AND reason ILIKE $1 ORDER BY id")
        .bind(reason_like(pattern))
        .fetch_all(db)
        .await
        .context("finding the dead letters to replay")
}

/// Marks a pending dead letter replayed, in the caller's transaction (which publishes it and
/// commits only once the broker confirmed). The row stays locked until then: a concurrent
/// replay waits, then finds it replayed. `None`: it was not pending.
pub async fn mark_replayed(
    tx: &mut PgConnection,
    id: i64,
    at: DateTime<Utc>,
) -> anyhow::Result<Option<DeadLetter>> {
    let row: Option<DeadLetterRow> = sqlx::query_as(&format!(
        "UPDATE dead_letters SET status = 'replayed', replayed_at = $2
         WHERE id = $1 AND status = 'pending' RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(at)
    .fetch_optional(tx)
    .await
    .with_context(|| format!("marking dead letter {id} replayed"))?;
    row.map(DeadLetter::try_from).transpose()
}

/// Marks a pending dead letter discarded and journals it; `None`: it was not pending.
pub async fn discard(db: &PgPool, id: i64, at: DateTime<Utc>) -> anyhow::Result<Option<DeadLetter>> {
    let mut tx = db.begin().await.context("starting to discard a dead letter")?;
    let row: Option<DeadLetterRow> = sqlx::query_as(&format!(
        "UPDATE dead_letters SET status = 'discarded', discarded_at = $2
         WHERE id = $1 AND status = 'pending' RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(at)
    .fetch_optional(&mut *tx)
    .await
    .with_context(|| format!("discarding dead letter {id}"))?;
    let Some(letter) = row.map(DeadLetter::try_from).transpose()? else {
        return Ok(None);
    };
    crate::journal::append_unattached(&mut tx, at, JOURNAL_DISCARDED, journal_detail(&letter)).await?;
    tx.commit().await.context("committing the discard")?;
    Ok(Some(letter))
}

/// What the journal says about a dead letter replayed or discarded.
pub fn journal_detail(letter: &DeadLetter) -> serde_json::Value {
    serde_json::json!({
        "dead_letter_id": letter.id,
        "queue": letter.queue,
        "exchange": letter.exchange,
        "routing_key": letter.routing_key,
        "message_id": letter.message_id,
        "reason": letter.reason,
    })
}
