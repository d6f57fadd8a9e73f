//! `relance dead-letters list | show ID | replay ID | replay --all --reason PATTERN |
//! discard ID`: the operator's side of the dead-letter queue. Each command first takes what
//! waits on the queue into the `dead_letters` table (`relance_messaging::dead_letters`,
//! shared with the console), then reads or acts on the table.

use crate::output::{self, Format};
use anyhow::{bail, Context};
use clap::Subcommand;
use lapin::Connection;
use relance_config::Settings;
use relance_contracts::names::Names;
use relance_domain::SharedClock;
use relance_messaging::dead_letters::{self, Discard, Filter, Replay};
use relance_messaging::{declare_topology, Publisher, TopologyOptions};
use relance_storage::dead_letters::{DeadLetter, DeadLetterStatus};
use serde::Serialize;
use sqlx::PgPool;

#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// What was dead-lettered, when, from which queue and why; newest first.
    List {
        /// Which ones: pending (waiting for you), replayed, discarded, or any.
        #[arg(long, value_enum, default_value_t = StatusArg::Pending)]
        status: StatusArg,
        /// Only those whose reason contains this (`*` matches anything; case-insensitive).
        #[arg(long)]
        reason: Option<String>,
        /// At most this many; the last line says how to see the next ones.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        limit: i64,
        /// Only those older than this id (as the previous page's last line says).
        #[arg(long)]
        before: Option<i64>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// One dead letter in full: reason, origin, properties, headers and body.
    Show {
        id: i64,
        /// `table` (readable) or `json`.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Republish a dead letter to its original exchange and routing key, once (with
    /// publisher confirms); the replay is journaled. `--all --reason PATTERN` replays every
    /// pending one whose reason matches.
    Replay {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<i64>,
        #[arg(long, requires = "reason")]
        all: bool,
        /// With --all: the reason to match (`*` matches anything; case-insensitive).
        #[arg(long, requires = "all")]
        reason: Option<String>,
    },
    /// Set a dead letter aside: it is not replayed, its record stays (status discarded).
    Discard { id: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusArg {
    Pending,
    Replayed,
    Discarded,
    Any,
}

impl StatusArg {
    fn status(self) -> Option<DeadLetterStatus> {
        match self {
            Self::Pending => Some(DeadLetterStatus::Pending),
            Self::Replayed => Some(DeadLetterStatus::Replayed),
            Self::Discarded => Some(DeadLetterStatus::Discarded),
            Self::Any => None,
        }
    }
}

/// What the command needs: the database, the broker (topology declared) and the clock.
struct Desk {
    db: PgPool,
    connection: Connection,
    names: Names,
    clock: SharedClock,
}

impl Desk {
    async fn open(settings: &Settings) -> anyhow::Result<Self> {
        let db = relance_storage::connect(&settings.database_url, 2).await?;
        let clock = output::command_clock(settings, &db).await?;
        let names = Names::new(&settings.namespace);
        let connection = relance_messaging::connect(&settings.amqp_url, "cli").await?;
        let channel = connection.create_channel().await.context("opening a channel")?;
        // The dead-letter queue may not exist yet if no service ever ran.
        declare_topology(&channel, &names, &TopologyOptions::from_settings(settings)).await?;
        let _ = channel.close(200, "declared".into()).await;
        let desk = Self {
            db,
            connection,
            names,
            clock,
        };
        dead_letters::drain(&desk.db, &desk.connection, &desk.names, desk.clock.as_ref()).await?;
        Ok(desk)
    }

    async fn close(self) {
        let _ = self.connection.close(200, "done".into()).await;
        self.db.close().await;
    }
}

pub async fn run(settings: Settings, command: DeadLettersCommand) -> anyhow::Result<()> {
    let desk = Desk::open(&settings).await?;
    let outcome = match command {
        DeadLettersCommand::List {
            status,
            reason,
            limit,
            before,
            format,
        } => {
            let filter = Filter {
                status: status.status(),
                reason,
                before,
                limit,
            };
            list(&desk.db, &filter, format).await
        }
        DeadLettersCommand::Show { id, format } => show(&desk.db, id, format).await,
        DeadLettersCommand::Replay { id, all, reason } => replay(&desk, id, all, reason).await,
        DeadLettersCommand::Discard { id } => {
            match dead_letters::discard(&desk.db, id, desk.clock.as_ref()).await? {
                Discard::Discarded(letter) => {
                    println!("discarded dead letter {} (its record stays)", letter.id);
                    Ok(())
                }
                Discard::NotPending(id, status) => bail!("dead letter {id} is {status}, not pending"),
                Discard::NotFound(id) => bail!("no dead letter {id}"),
            }
        }
    };
    desk.close().await;
    outcome
}

/// One dead letter as `list --format json|csv` writes it.
#[derive(Serialize)]
struct Row<'a> {
    id: i64,
    dead_lettered_at: String,
    status: DeadLetterStatus,
    queue: Option<&'a str>,
    exchange: &'a str,
    routing_key: &'a str,
    message_id: Option<&'a str>,
    reason: &'a str,
    replay_of: Option<i64>,
    replayed_at: Option<String>,
    discarded_at: Option<String>,
}

fn row(l: &DeadLetter) -> Row<'_> {
    Row {
        id: l.id,
        dead_lettered_at: l.dead_lettered_at.to_rfc3339(),
        status: l.status,
        queue: l.queue.as_deref(),
        exchange: &l.exchange,
        routing_key: &l.routing_key,
        message_id: l.message_id.as_deref(),
        reason: &l.reason,
        replay_of: l.replay_of,
        replayed_at: l.replayed_at.map(|t| t.to_rfc3339()),
        discarded_at: l.discarded_at.map(|t| t.to_rfc3339()),
    }
}

async fn list(db: &PgPool, filter: &Filter, format: Format) -> anyhow::Result<()> {
    let letters = dead_letters::list(db, filter).await?;
    if format != Format::Table {
        return output::write_rows(format, &letters.iter().map(row).collect::<Vec<_>>());
    }
    println!(
        "{:>6}  {:<16}  {:<9}  {:<32} {:<24} reason",
        "id", "when (UTC)", "status", "queue", "routing key"
    );
    for l in &letters {
        let reason: String = l.reason.chars().take(100).collect();
        println!(
            "{:>6}  {:<16}  {:<9}  {:<32} {:<24} {reason}",
            l.id,
            output::minute(l.dead_lettered_at),
            l.status.as_str(),
            l.queue.as_deref().unwrap_or("(unroutable)"),
            l.routing_key,
        );
    }
    println!("{} dead letter(s)", letters.len());
    if let (Some(last), true) = (letters.last(), letters.len() as i64 == filter.limit) {
        println!(
            "more may follow: relance dead-letters list --limit {} --before {}",
            filter.limit, last.id
        );
    }
    Ok(())
}

async fn show(db: &PgPool, id: i64, format: Format) -> anyhow::Result<()> {
    let Some(letter) = dead_letters::get(db, id).await? else {
        bail!("no dead letter {id}: see `relance dead-letters list --status any`");
    };
    let (kind, body) = dead_letters::body_view(&letter.body);
    if format != Format::Table {
        let mut value = serde_json::to_value(&letter).context("writing the dead letter")?;
        if let Some(map) = value.as_object_mut() {
            map.insert("body_encoding".into(), kind.into());
            map.insert(
                "body".into(),
                match kind {
                    "base64" => body.into(),
                    _ => String::from_utf8_lossy(&letter.body).into(),
                },
            );
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&value).context("writing JSON")?
        );
        return Ok(());
    }
    println!("dead letter {}  ({})", letter.id, letter.status);
    println!("reason:          {}", letter.reason);
    println!("dead-lettered:   {} UTC", output::minute(letter.dead_lettered_at));
    println!(
        "from queue:      {}",
        letter
            .queue
            .as_deref()
            .unwrap_or("(none: no queue was bound for its key)")
    );
    println!(
        "published to:    {} with key {}",
        letter.exchange, letter.routing_key
    );
    println!("message id:      {}", letter.message_id.as_deref().unwrap_or("-"));
    if let Some(of) = letter.replay_of {
        println!("a replay of:     dead letter {of}");
    }
    if let Some(at) = letter.replayed_at {
        println!("replayed:        {} UTC", output::minute(at));
    }
    if let Some(at) = letter.discarded_at {
        println!("discarded:       {} UTC", output::minute(at));
    }
    println!("properties:      {}", letter.properties);
    println!("headers:         {}", letter.headers);
    println!("body ({kind}):\n{body}");
    Ok(())
}

async fn replay(desk: &Desk, id: Option<i64>, all: bool, reason: Option<String>) -> anyhow::Result<()> {
    let publisher = Publisher::open(&desk.connection).await?;
    let outcome = async {
        let replays = match (id, all, reason) {
            (Some(id), _, _) => {
                vec![dead_letters::replay(&desk.db, &publisher, id, desk.clock.as_ref()).await?]
            }
            (None, true, Some(pattern)) => {
                dead_letters::replay_matching(&desk.db, &publisher, &pattern, desk.clock.as_ref()).await?
            }
            _ => bail!("give a dead letter's id, or --all --reason PATTERN"),
        };
        let mut refused = 0;
        for replay in &replays {
            match replay {
                Replay::Replayed(l) => println!(
                    "replayed dead letter {} to {} with key {}",
                    l.id, l.exchange, l.routing_key
                ),
                Replay::NotPending(id, status) => {
                    refused += 1;
                    eprintln!("dead letter {id} is {status}: not replayed again");
                }
                Replay::NotFound(id) => {
                    refused += 1;
                    eprintln!("no dead letter {id}");
                }
            }
        }
        if all {
            println!("{} dead letter(s) replayed", replays.len() - refused);
        }
        if id.is_some() && refused > 0 {
            bail!("nothing replayed");
        }
        Ok(())
    }
    .await;
    publisher.close().await;
    outcome
}
