//! Group commit: the short transactions of many concurrent handlers committed together.
//!
//! Pieces of work queued while a batch runs form the next batch (up to `max_batch`), which
//! runs them one after the other in one transaction and commits once: what is saved is the
//! commit per piece, its WAL flush and its deferred triggers (the journal's links and the
//! outbox's event sequence run once per commit). An idle service commits each piece at once,
//! alone, as a transaction of its own; nothing waits for a batch to fill.
//!
//! Each caller hears its piece's outcome only once the transaction holding it committed, so
//! it acts on durable writes exactly as it would with a transaction of its own (the sender's
//! recovery rules rest on that). When a piece of a batch fails (an error, a panic) or the
//! batch fails to commit, the batch is rolled back and every piece of it runs again alone,
//! each in its own transaction, and its caller hears that run's outcome: a failure stays the
//! failing piece's own, and no savepoint is paid for in the common case where none fails
//! (savepoints cost a subtransaction each: measured, they made one-piece batches 10-25%
//! slower than plain transactions). A piece therefore may run twice and must be safe to
//! run again after a rollback: it reads what it decides from the database.
//!
//! What a piece of work may do: database statements on the connection it is given, and local
//! computation. Never a network call to anything else (a batch holds its locks until it
//! commits), never `BEGIN`/`COMMIT` of its own.

use anyhow::Context;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use relance_telemetry::metrics;
use sqlx::{Acquire, PgConnection, PgPool};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};
use tracing::Instrument;

/// What the end of the transaction that ran a piece means for it: `Err` when it failed to
/// commit (or could not start).
type Finish = Box<dyn FnOnce(Result<(), Arc<anyhow::Error>>) + Send>;

/// A piece of work with its result erased: runs it (again, if need be), and says whether it
/// succeeded and how to tell its caller once its transaction has ended.
type Erased = Box<dyn for<'c> Fn(&'c mut PgConnection) -> BoxFuture<'c, (bool, Finish)> + Send + Sync>;

/// Tells a caller its piece could not be run (no connection, no transaction).
type Refuse = Box<dyn FnOnce(Arc<anyhow::Error>) + Send + Sync>;

struct Job {
    work: Erased,
    refuse: Refuse,
    span: tracing::Span,
}

/// A group committer over a pool: [`GroupCommit::run`] from any number of tasks.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::UnboundedSender<Job>,
}

/// A piece of work's transaction failed (could not start, or commit): its cause is kept as
/// this error's source, so that an outage is still told from a bad query (`is_unavailable`).
#[derive(Debug)]
pub struct BatchFailed(Arc<anyhow::Error>);

impl std::fmt::Display for BatchFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the work's transaction failed")
    }
}

impl std::error::Error for BatchFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let cause: &(dyn std::error::Error + Send + Sync + 'static) = (*self.0).as_ref();
        Some(cause)
    }
}

impl GroupCommit {
    /// Starts `lanes` committers of `service` on `pool` (each holds a connection while a
    /// batch runs), each committing up to `max_batch` pieces of work at once. They stop
    /// when every handle is dropped. Batch sizes and undone batches are metrics labelled
    /// with `service`.
    pub fn start(pool: &PgPool, service: &'static str, lanes: usize, max_batch: usize) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        let waiting = Arc::new(Mutex::new(waiting));
        metrics::start_commit_batches(service);
        for _ in 0..lanes.max(1) {
            tokio::spawn(lane(pool.clone(), service, waiting.clone(), max_batch.max(1)));
        }
        Self { queue }
    }

    /// Runs `work` in the next batch and returns its result once its transaction committed.
    /// An `Err` from `work` (or a panic, resumed here in the caller) is its own: the batch
    /// is rolled back and its other pieces run again alone. A piece whose transaction fails
    /// to commit fails with the cause ([`BatchFailed`]).
    pub async fn run<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<anyhow::Error> + Send + 'static,
        F: for<'c> Fn(&'c mut PgConnection) -> BoxFuture<'c, Result<T, E>> + Send + Sync + 'static,
    {
        type Reply<T, E> = std::thread::Result<Result<T, E>>;
        let (reply, answer) = oneshot::channel::<Reply<T, E>>();
        // Told once, by the last run of the piece (or its refusal).
        let reply = Arc::new(std::sync::Mutex::new(Some(reply)));
        let tell = |reply: &std::sync::Mutex<Option<oneshot::Sender<Reply<T, E>>>>, told: Reply<T, E>| {
            if let Some(sender) = reply.lock().ok().and_then(|mut slot| slot.take()) {
                let _ = sender.send(told);
            }
        };
        let refused = reply.clone();
        let refuse: Refuse = Box::new(move |cause| {
            tell(&refused, Ok(Err(E::from(anyhow::Error::new(BatchFailed(cause))))));
        });
        let erased = erase(move |conn| {
            let reply = reply.clone();
            // Making the future runs none of the work (it runs when polled): a panic comes
            // while polling, and is caught there.
            let future = work(conn);
            async move {
                let outcome = AssertUnwindSafe(future).catch_unwind().await;
                let keep = matches!(outcome, Ok(Ok(_)));
                let finish: Finish = Box::new(move |ended: Result<(), Arc<anyhow::Error>>| {
                    let told = match (outcome, ended) {
                        (Ok(Ok(_)), Err(cause)) => Ok(Err(E::from(anyhow::Error::new(BatchFailed(cause))))),
                        (outcome, _) => outcome,
                    };
                    tell(&reply, told);
                });
                (keep, finish)
            }
            .boxed()
        });
        let job = Job {
            work: erased,
            refuse,
            span: tracing::Span::current(),
        };
        if self.queue.send(job).is_err() {
            return Err(E::from(anyhow::anyhow!("the group committer has stopped")));
        }
        match answer.await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(E::from(anyhow::anyhow!(
                "the group committer stopped before the work's transaction ended"
            ))),
        }
    }
}

/// One committer: takes whatever work is waiting (up to `max_batch`), runs it in one
/// transaction, commits, tells each caller; again.
async fn lane(
    pool: PgPool,
    service: &'static str,
    waiting: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>,
    max_batch: usize,
) {
    loop {
        let mut batch = Vec::with_capacity(max_batch);
        {
            let mut waiting = waiting.lock().await;
            match waiting.recv().await {
                Some(job) => batch.push(job),
                None => return,
            }
            while batch.len() < max_batch {
                match waiting.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        run_batch(&pool, service, batch).await;
    }
}

/// How a batch run together ended.
enum Together {
    /// Every piece succeeded and the transaction committed.
    Committed(Vec<Finish>),
    /// No connection or no transaction: nothing ran.
    NotStarted(anyhow::Error),
    /// A piece failed, or the commit did: rolled back, each piece is to run alone.
    Undone,
}

async fn run_batch(pool: &PgPool, service: &'static str, batch: Vec<Job>) {
    if batch.len() > 1 {
        match run_together(pool, &batch).await {
            Together::Committed(finishes) => {
                metrics::observe_commit_batch(service, finishes.len());
                for finish in finishes {
                    finish(Ok(()));
                }
                return;
            }
            Together::NotStarted(e) => {
                tracing::warn!(error = format!("{e:#}"), "a batch's transaction could not start");
                let cause = Arc::new(e);
                for job in batch {
                    (job.refuse)(cause.clone());
                }
                return;
            }
            Together::Undone => metrics::record_commit_batch_undone(service),
        }
    }
    // Alone, each in a transaction of its own (a batch of one, or one that failed together).
    let mut jobs = batch.into_iter();
    while let Some(job) = jobs.next() {
        let alone = run_alone(pool, job).await;
        if let Ok(true) = alone {
            metrics::observe_commit_batch(service, 1);
        }
        if let Err(e) = alone {
            // No connection: the rest would wait as long for theirs.
            tracing::warn!(error = format!("{e:#}"), "a transaction could not start");
            let cause = Arc::new(e);
            for job in jobs.by_ref() {
                (job.refuse)(cause.clone());
            }
        }
    }
}

/// Runs the batch's pieces one after the other in one transaction and commits.
async fn run_together(pool: &PgPool, batch: &[Job]) -> Together {
    let mut conn = match pool.acquire().await {
        Ok(conn) => conn,
        Err(e) => {
            return Together::NotStarted(anyhow::Error::new(e).context("acquiring a connection for a batch"))
        }
    };
    let mut tx = match conn.begin().await {
        Ok(tx) => tx,
        Err(e) => {
            return Together::NotStarted(anyhow::Error::new(e).context("starting a batch's transaction"))
        }
    };
    let mut finishes = Vec::with_capacity(batch.len());
    for job in batch {
        let (kept, finish) = (job.work)(&mut tx).instrument(job.span.clone()).await;
        if !kept {
            // Its outcome comes from its run alone; the rollback happens as `tx` drops.
            drop(finish);
            return Together::Undone;
        }
        finishes.push(finish);
    }
    match tx.commit().await {
        Ok(()) => Together::Committed(finishes),
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                size = batch.len(),
                "a batch failed to commit; its pieces run again alone"
            );
            Together::Undone
        }
    }
}

/// Runs one piece in a transaction of its own: committed if it succeeded, rolled back if
/// not, and its caller told; whether it committed. `Err`: it could not start (its caller is
/// told so too).
async fn run_alone(pool: &PgPool, job: Job) -> anyhow::Result<bool> {
    let mut conn = match pool.acquire().await {
        Ok(conn) => conn,
        Err(e) => {
            return Err(refused(
                job,
                anyhow::Error::new(e).context("acquiring a connection"),
            ))
        }
    };
    let mut tx = match conn.begin().await {
        Ok(tx) => tx,
        Err(e) => {
            return Err(refused(
                job,
                anyhow::Error::new(e).context("starting a transaction"),
            ))
        }
    };
    let (kept, finish) = (job.work)(&mut tx).instrument(job.span).await;
    let ended = if kept {
        tx.commit().await.context("committing")
    } else {
        tx.rollback().await.context("rolling back")
    };
    let committed = kept && ended.is_ok();
    finish(ended.map_err(Arc::new));
    Ok(committed)
}

/// Tells the caller of a piece that could not start why; the same cause for the caller's
/// caller.
fn refused(job: Job, cause: anyhow::Error) -> anyhow::Error {
    let shown = anyhow::anyhow!("{cause:#}");
    (job.refuse)(Arc::new(cause));
    shown
}

/// Boxes a piece of work; the bound gives the closure its higher-ranked signature.
fn erase<F>(work: F) -> Erased
where
    F: for<'c> Fn(&'c mut PgConnection) -> BoxFuture<'c, (bool, Finish)> + Send + Sync + 'static,
{
    Box::new(work)
}
