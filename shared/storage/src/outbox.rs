//! Transactional outbox: a message is inserted in the same transaction as the change that
//! causes it, and a relay publishes it afterwards. A broker outage delays messages, never
//! loses them.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Which exchange of the namespace a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Jobs,
    Events,
}

impl Destination {
    pub fn as_str(self) -> &'static str {
        match self {
            Destination::Jobs => "jobs",
            Destination::Events => "events",
        }
    }
}

#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub destination: Destination,
    pub routing_key: String,
    pub message_id: Uuid,
    /// The invoice number: groups every message about one invoice.
    pub correlation_id: String,
    pub payload: serde_json::Value,
    /// W3C trace context of the change, so the consumer continues the same trace.
    pub headers: BTreeMap<String, String>,
}

/// A query with its parameters, to bind a message's columns onto.
pub(crate) type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

pub async fn enqueue(
    tx: &mut PgConnection,
    message: &OutgoingMessage,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    let query = sqlx::query(
        "INSERT INTO outbox (destination, routing_key, message_id, correlation_id, payload, headers, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    );
    bind_message(query, message, at)
        .execute(tx)
        .await
        .with_context(|| format!("adding a {} message to the outbox", message.routing_key))?;
    Ok(())
}

/// Binds a message's seven columns, in the order of the outbox's inserts (`destination`,
/// `routing_key`, `message_id`, `correlation_id`, `payload`, `headers`, `created_at`), as a
/// query's next parameters.
pub(crate) fn bind_message<'q>(
    query: PgQuery<'q>,
    message: &'q OutgoingMessage,
    at: DateTime<Utc>,
) -> PgQuery<'q> {
    query
        .bind(message.destination.as_str())
        .bind(&message.routing_key)
        .bind(message.message_id)
        .bind(&message.correlation_id)
        .bind(&message.payload)
        .bind(sqlx::types::Json(&message.headers))
        .bind(at)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub destination: String,
    pub routing_key: String,
    pub message_id: Uuid,
    pub correlation_id: String,
    pub payload: serde_json::Value,
    pub headers: sqlx::types::Json<BTreeMap<String, String>>,
    pub created_at: DateTime<Utc>,
}

/// Locks the oldest unpublished messages; other relays skip them (SKIP LOCKED).
pub async fn claim_unpublished(tx: &mut PgConnection, limit: i64) -> anyhow::Result<Vec<OutboxRow>> {
    sqlx::query_as(
        "SELECT id, destination, routing_key, message_id, correlation_id, payload, headers, created_at
         FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(tx)
    .await
    .context("claiming outbox messages")
}

pub async fn mark_published(tx: &mut PgConnection, ids: &[i64], at: DateTime<Utc>) -> anyhow::Result<()> {
    sqlx::query("UPDATE outbox SET published_at = $2 WHERE id = ANY($1)")
        .bind(ids)
        .bind(at)
        .execute(tx)
        .await
        .context("marking outbox messages published")?;
    Ok(())
}

/// Messages still waiting for the relay (tests and the demo wait for zero).
pub async fn pending_count(db: &sqlx::PgPool) -> anyhow::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(db)
        .await
        .context("counting outbox messages")
}
