//! Group commit: the short transactions of many concurrent handlers committed together.
//!
//! Each piece of work runs in a savepoint of a shared transaction: its failure undoes its
//! own writes only, and its caller hears its outcome only once the shared transaction has
//! committed. A caller therefore acts on durable writes exactly as it would with a
//! transaction of its own (the sender's recovery rules rest on that); what is saved is the
//! commit per piece of work: its WAL flush and its deferred triggers (the journal's links
//! and the outbox's event sequence run once per commit). Work queued while a batch runs
//! forms the next batch, so an idle service commits each piece at once, alone, and a busy
//! one shares a commit among up to `max_batch` pieces without waiting for them.
//!
//! What a piece of work may do: database statements on the connection it is given, and
//! local computation. Never a network call to anything else (a batch holds its locks until
//! it commits), never `BEGIN`/`COMMIT` of its own.

use anyhow::Context;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use sqlx::{Acquire, PgConnection, PgPool};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};
use tracing::Instrument;

/// What the shared transaction's end means for one piece of work.
type Finish = Box<dyn FnOnce(Result<(), Arc<anyhow::Error>>) + Send>;

/// A piece of work with its result erased: whether to keep its writes, and how to tell its
/// caller once the batch has ended.
type Erased = Box<dyn for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, (bool, Finish)> + Send>;

struct Job {
    work: Erased,
    span: tracing::Span,
}

/// A group committer over a pool: [`GroupCommit::run`] from any number of tasks.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::UnboundedSender<Job>,
}

/// The shared transaction failed (could not start, or commit): every piece of work of the
/// batch fails with it, its cause kept as this error's source so that an outage is still
/// told from a bad query (`is_unavailable`).
#[derive(Debug)]
pub struct BatchFailed(Arc<anyhow::Error>);

impl std::fmt::Display for BatchFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the batch's shared transaction failed")
    }
}

impl std::error::Error for BatchFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let cause: &(dyn std::error::Error + Send + Sync + 'static) = (*self.0).as_ref();
        Some(cause)
    }
}

impl GroupCommit {
    /// Starts `lanes` committers on `pool` (each holds a connection while a batch runs),
    /// each committing up to `max_batch` pieces of work at once. They stop when every
    /// handle is dropped.
    pub fn start(pool: &PgPool, lanes: usize, max_batch: usize) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..lanes.max(1) {
            tokio::spawn(lane(pool.clone(), waiting.clone(), max_batch.max(1)));
        }
        Self { queue }
    }

    /// Runs `work` in a savepoint of the next batch and returns its result once the batch
    /// committed. An `Err` from `work` rolls back its savepoint (its writes only); a batch
    /// that fails to commit fails every piece of it, with the cause ([`BatchFailed`]). A
    /// panic in `work` is resumed here, in the caller.
    pub async fn run<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<anyhow::Error> + Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
    {
        type Reply<T, E> = std::thread::Result<Result<T, E>>;
        let (reply, answer) = oneshot::channel::<Reply<T, E>>();
        let erased = erase(move |conn| {
            async move {
                let outcome = AssertUnwindSafe(work(conn)).catch_unwind().await;
                let keep = matches!(outcome, Ok(Ok(_)));
                let finish: Finish = Box::new(move |ended: Result<(), Arc<anyhow::Error>>| {
                    let told = match (outcome, ended) {
                        (Ok(Ok(_)), Err(cause)) => Ok(Err(E::from(anyhow::Error::new(BatchFailed(cause))))),
                        (outcome, _) => outcome,
                    };
                    let _ = reply.send(told);
                });
                (keep, finish)
            }
            .boxed()
        });
        let job = Job {
            work: erased,
            span: tracing::Span::current(),
        };
        if self.queue.send(job).is_err() {
            return Err(E::from(anyhow::anyhow!("the group committer has stopped")));
        }
        match answer.await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(E::from(anyhow::anyhow!(
                "the group committer stopped before the work's batch ended"
            ))),
        }
    }
}

/// One committer: takes whatever work is waiting (up to `max_batch`), runs it in one
/// transaction, commits, tells each caller; again.
async fn lane(pool: PgPool, waiting: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>, max_batch: usize) {
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
        run_batch(&pool, batch).await;
    }
}

async fn run_batch(pool: &PgPool, batch: Vec<Job>) {
    let size = batch.len();
    let mut finishes: Vec<Finish> = Vec::with_capacity(size);
    let ended = async {
        let mut conn = pool
            .acquire()
            .await
            .context("acquiring a connection for a batch")?;
        let mut tx = conn.begin().await.context("starting a batch's transaction")?;
        for job in batch {
            // A failure here drops this job and the rest unrun: their callers hear the batch
            // ended without them, a transient failure.
            let mut savepoint = tx.begin().await.context("starting a savepoint")?;
            let (keep, finish) = (job.work)(&mut savepoint).instrument(job.span).await;
            finishes.push(finish);
            let settled = if keep {
                savepoint.commit().await
            } else {
                savepoint.rollback().await
            };
            settled.context("ending a piece of work's savepoint")?;
        }
        tx.commit()
            .await
            .with_context(|| format!("committing a batch of {size}"))?;
        anyhow::Ok(())
    }
    .await;
    let ended = ended.map_err(Arc::new);
    if let Err(e) = &ended {
        tracing::warn!(error = format!("{e:#}"), size, "a batch's transaction failed");
    }
    for finish in finishes {
        finish(ended.clone());
    }
}

/// Boxes a piece of work; the bound gives the closure its higher-ranked signature.
fn erase<F>(work: F) -> Erased
where
    F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, (bool, Finish)> + Send + 'static,
{
    Box::new(work)
}
