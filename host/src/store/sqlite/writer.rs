//! The writer thread: it owns the only write connection and applies
//! whatever writes are queued in one transaction (group commit), answering
//! each caller only after the commit that made its write durable.

use std::sync::Arc;

use sqlx::SqliteConnection;
use tokio::sync::{Notify, mpsc, oneshot};

use super::SqliteStore;
use super::raw::RawConnection;
use crate::store::{Result, StoreError};

/// Most writes applied in one transaction.
pub(super) const MAX_BATCH: usize = 512;

/// One queued write: applied by the writer inside the batch transaction, then
/// answered once the batch has committed (or failed).
pub(super) trait WriteJob: Send {
    /// Apply the write. An error means the batch's transaction is spoilt;
    /// a refusal is kept as the job's result and is not an error here.
    fn apply(&mut self, conn: &mut RawConnection) -> Result<(), String>;
    /// Answer the caller with the write's result, or with the commit failure.
    fn answer(self: Box<Self>, commit: Result<(), &str>);
}

pub(super) type WriteFn<T> = Box<dyn FnOnce(&mut RawConnection) -> Result<T> + Send>;

struct TypedJob<T> {
    write: Option<WriteFn<T>>,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T: Send + 'static> WriteJob for TypedJob<T> {
    fn apply(&mut self, conn: &mut RawConnection) -> Result<(), String> {
        let write = self.write.take().expect("a write job is applied once");
        let result = write(conn);
        let spoilt = match &result {
            Err(
                error @ (StoreError::Database(_) | StoreError::Sqlite(_) | StoreError::Corrupt(_)),
            ) => Err(error.to_string()),
            _ => Ok(()),
        };
        self.result = Some(result);
        spoilt
    }

    fn answer(self: Box<Self>, commit: Result<(), &str>) {
        let result = match commit {
            Ok(()) => self.result.unwrap_or(Err(StoreError::Closed)),
            Err(message) => Err(StoreError::Commit(message.to_owned())),
        };
        // The caller may have gone away (a dropped request); nothing to do then.
        let _ = self.reply.send(result);
    }
}

impl std::fmt::Debug for dyn WriteJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteJob")
    }
}

impl SqliteStore {
    pub(super) async fn write<T: Send + 'static>(&self, write: WriteFn<T>) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let job = TypedJob {
            write: Some(write),
            result: None,
            reply,
        };
        self.writes
            .send(Box::new(job))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

#[allow(unsafe_code)]
/// Start the writer thread: it takes `conn`'s handle from sqlx and applies
/// queued writes, batch by batch, until every sender is gone, notifying
/// `woken` after a batch that made a parked run due. Returns once the
/// writer holds the handle, or with why it could not take it.
pub(super) async fn spawn_writer(
    conn: SqliteConnection,
    queue: mpsc::Receiver<Box<dyn WriteJob>>,
    woken: Arc<Notify>,
) -> Result<()> {
    let (started, start) = oneshot::channel();
    std::thread::Builder::new()
        .name("cairn-sqlite-writer".into())
        .spawn(move || {
            let mut conn = conn;
            // sqlx's lock is async; a small runtime of this thread's own
            // waits for it.
            let locked = tokio::runtime::Builder::new_current_thread()
                .build()
                .map_err(|e| StoreError::Commit(format!("cannot start the writer: {e}")))
                .and_then(|runtime| Ok(runtime.block_on(conn.lock_handle())?));
            let mut locked = match locked {
                Ok(locked) => locked,
                Err(error) => {
                    let _ = started.send(Err(error));
                    return;
                }
            };
            // SAFETY: sqlx's thread leaves the handle alone while `locked`
            // lives, and `raw` is dropped first.
            let mut raw = unsafe { RawConnection::new(locked.as_raw_handle()) };
            let _ = started.send(Ok(()));
            run_writer(&mut raw, queue, &woken);
            drop(raw);
            drop(locked);
        })
        .map_err(|e| StoreError::Commit(format!("cannot start the writer: {e}")))?;
    start.await.map_err(|_| StoreError::Closed)?
}

fn run_writer(
    conn: &mut RawConnection,
    mut queue: mpsc::Receiver<Box<dyn WriteJob>>,
    woken: &Notify,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH
            && let Ok(next) = queue.try_recv()
        {
            batch.push(next);
        }
        apply_batch(conn, &mut batch);
        if super::waits::any_woken(conn) {
            woken.notify_one();
        }
    }
}

/// Apply `jobs` in one transaction, then answer them all.
fn apply_batch(conn: &mut RawConnection, jobs: &mut Vec<Box<dyn WriteJob>>) {
    let commit = (|| {
        conn.query("BEGIN IMMEDIATE")
            .execute()
            .map_err(|e| StoreError::from(e).to_string())?;
        for job in jobs.iter_mut() {
            // A panicking write spoils its batch, not the writer: every
            // later write would fail with it.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.apply(conn)))
                .map_err(|_| "a write panicked; see the log".to_owned())??;
        }
        conn.query("COMMIT")
            .execute()
            .map_err(|e| StoreError::from(e).to_string())?;
        Ok::<(), String>(())
    })();
    let commit = match commit {
        Ok(()) => Ok(()),
        Err(error) => {
            tracing::error!(%error, writes = jobs.len(), "a batch of writes failed to commit");
            // Leave no transaction open for the next batch (if there is
            // none, this fails harmlessly): otherwise every later BEGIN
            // would fail.
            let _ = conn.query("ROLLBACK").execute();
            if !conn.is_autocommit()
                && let Err(failure) = conn.query("ROLLBACK").execute()
            {
                tracing::error!(?failure, "the writer cannot roll back its transaction");
            }
            Err(error)
        }
    };
    for job in jobs.drain(..) {
        job.answer(commit.as_ref().map(|_| ()).map_err(String::as_str));
    }
}
