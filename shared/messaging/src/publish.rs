//! Publishing with publisher confirms: a publish returns only once the broker has taken
//! responsibility for the message (or fails, and the caller keeps it for later).

use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::Confirmation;
use lapin::{BasicProperties, Channel, Connection};
use std::collections::BTreeMap;
use tracing::Instrument;

/// The AMQP properties of every relance message: ids, time, type and trace headers.
pub fn properties(
    message_id: &str,
    correlation_id: &str,
    routing_key: &str,
    at: DateTime<Utc>,
    headers: &BTreeMap<String, String>,
) -> BasicProperties {
    let mut table = FieldTable::default();
    for (k, v) in headers {
        table.insert(
            ShortString::from(k.as_str()),
            AMQPValue::LongString(LongString::from(v.as_str())),
        );
    }
    BasicProperties::default()
        .with_message_id(ShortString::from(message_id))
        .with_correlation_id(ShortString::from(correlation_id))
        .with_type(ShortString::from(routing_key))
        .with_timestamp(u64::try_from(at.timestamp()).unwrap_or(0))
        .with_content_type(ShortString::from("application/json"))
        .with_delivery_mode(2)
        .with_headers(table)
}

/// A channel in confirm mode.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
}

impl Publisher {
    pub async fn open(connection: &Connection) -> anyhow::Result<Self> {
        let channel = connection
            .create_channel()
            .await
            .context("opening a publishing channel")?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("enabling publisher confirms")?;
        Ok(Self { channel })
    }

    /// Closes the channel. A channel only dropped closes itself in the background, which
    /// races with the connection's own close and makes lapin log a connection error.
    pub async fn close(&self) {
        let _ = self.channel.close(200, "done".into()).await;
    }

    /// Publishes and waits for the broker's confirm. With `mandatory`, a message that no
    /// queue would receive is an error rather than silently dropped.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        properties: BasicProperties,
        mandatory: bool,
    ) -> anyhow::Result<()> {
        let confirm = self
            .publish_unconfirmed(exchange, routing_key, payload, properties, mandatory)
            .await?;
        check_confirmation(
            confirm.await.context("waiting for the broker's confirm")?,
            routing_key,
        )
    }

    /// Publishes without waiting; the caller awaits the returned confirms (batching).
    pub async fn publish_unconfirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        properties: BasicProperties,
        mandatory: bool,
    ) -> anyhow::Result<lapin::PublisherConfirm> {
        self.channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory,
                    ..BasicPublishOptions::default()
                },
                payload,
                properties,
            )
            .await
            .with_context(|| format!("publishing {routing_key} to {exchange}"))
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }
}

pub fn check_confirmation(confirmation: Confirmation, routing_key: &str) -> anyhow::Result<()> {
    match confirmation {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(returned)) => Err(anyhow!(
            "the broker returned {routing_key}: no queue is bound for it ({})",
            returned.reply_text.as_str()
        )),
        Confirmation::Nack(_) => Err(anyhow!("the broker refused {routing_key} (nack)")),
    }
}

/// Publishes a JSON body on `<ns>.inbound`, with confirms, as an invoicing system would (the
/// CLI, the console and the tests all send the accounts team's messages this way).
pub async fn publish_inbound(
    publisher: &Publisher,
    names: &relance_contracts::names::Names,
    routing_key: &str,
    body: &serde_json::Value,
) -> anyhow::Result<()> {
    let message_id = body
        .get("event_id")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let exchange = names.inbound_exchange();
    // A trace starts here (or goes on, under a caller's span): what the message causes in
    // relance is its continuation.
    let span = crate::spans::publish_span(&exchange, routing_key, &message_id);
    let props = properties(
        &message_id,
        &message_id,
        routing_key,
        Utc::now(),
        &relance_telemetry::trace_headers_of(&span),
    );
    let payload = serde_json::to_vec(body).context("encoding the message")?;
    let published = publisher
        .publish(&exchange, routing_key, &payload, props, true)
        .instrument(span.clone())
        .await;
    if published.is_err() {
        crate::spans::record_error(&span, "publish_failed");
    }
    published
}
