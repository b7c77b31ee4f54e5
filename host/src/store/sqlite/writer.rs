//! The writer thread: it owns the only write connection and applies
//! whatever writes are queued in one transaction (group commit), answering
//! each caller only after the commit that made its write durable. Each write
//! has a savepoint of its own, so one that fails is undone alone and the
//! rest of its batch commits; only a failed commit (or SQLite rolling the
//! whole transaction back, as it may on a full disk) fails them all.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};

use super::connection::WriteConnection;
use super::{SqliteStore, Synchronous};
use crate::store::{Result, StoreError, WriteHealth};

/// Most writes applied in one transaction.
pub(super) const MAX_BATCH: usize = 512;

/// One queued write: applied by the writer inside the batch transaction, then
/// answered once the batch has committed (or failed).
pub(super) trait WriteJob: Send {
    /// Apply the write. An error is a failure of the database (the write's
    /// savepoint is rolled back); a refusal is kept as the job's result and
    /// is not an error here.
    fn apply(&mut self, conn: &mut WriteConnection) -> Result<()>;
    /// Answer the caller with the write's result, or with the commit failure.
    fn answer(self: Box<Self>, commit: Result<(), &StoreError>);
}

/// The same failure again, for each write a failed commit took with it.
fn replica(error: &StoreError) -> StoreError {
    match error {
        StoreError::StorageFull(detail) => StoreError::StorageFull(detail.clone()),
        other => StoreError::Commit(other.to_string()),
    }
}

pub(super) type WriteFn<T> = Box<dyn FnOnce(&mut WriteConnection) -> Result<T> + Send>;

struct TypedJob<T> {
    write: Option<WriteFn<T>>,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T: Send + 'static> WriteJob for TypedJob<T> {
    fn apply(&mut self, conn: &mut WriteConnection) -> Result<()> {
        let write = self.write.take().expect("a write job is applied once");
        let result = write(conn);
        let failed = match &result {
            Err(
                error @ (StoreError::Database(_)
                | StoreError::Sqlite(_)
                | StoreError::Corrupt(_)
                | StoreError::StorageFull(_)),
            ) => Err(replica(error)),
            _ => Ok(()),
        };
        self.result = Some(result);
        failed
    }

    fn answer(self: Box<Self>, commit: Result<(), &StoreError>) {
        let result = match commit {
            Ok(()) => self.result.unwrap_or(Err(StoreError::Commit(
                "the write panicked; see the log".into(),
            ))),
            Err(error) => Err(replica(error)),
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

/// Start the writer thread: it opens the write connection to `path` and
/// applies queued writes, batch by batch, until every sender is gone,
/// notifying `woken` after a batch that made a parked run due. Returns once
/// the connection is open, or with why it could not be opened.
pub(super) async fn spawn_writer(
    path: &Path,
    synchronous: Synchronous,
    queue: mpsc::Receiver<Box<dyn WriteJob>>,
    woken: Arc<Notify>,
    health: Arc<WriteHealth>,
) -> Result<()> {
    let (started, start) = oneshot::channel();
    let path = path.to_owned();
    std::thread::Builder::new()
        .name("cairn-sqlite-writer".into())
        .spawn(move || {
            let mut conn = match WriteConnection::open(&path, synchronous) {
                Ok(conn) => conn,
                Err(failure) => {
                    let _ = started.send(Err(failure.into()));
                    return;
                }
            };
            let _ = started.send(Ok(()));
            run_writer(&mut conn, queue, &woken, &health);
        })
        .map_err(|e| StoreError::Commit(format!("cannot start the writer: {e}")))?;
    start.await.map_err(|_| StoreError::Closed)?
}

fn run_writer(
    conn: &mut WriteConnection,
    mut queue: mpsc::Receiver<Box<dyn WriteJob>>,
    woken: &Notify,
    health: &WriteHealth,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH
            && let Ok(next) = queue.try_recv()
        {
            batch.push(next);
        }
        apply_batch(conn, &mut batch, health);
        if super::waits::any_woken(conn) {
            woken.notify_one();
        }
    }
}

/// Apply `jobs` in one transaction, each in a savepoint of its own, then
/// answer them all.
fn apply_batch(
    conn: &mut WriteConnection,
    jobs: &mut Vec<Box<dyn WriteJob>>,
    health: &WriteHealth,
) {
    let mut failed_write = None;
    let started = std::time::Instant::now();
    let commit = (|| {
        conn.query("BEGIN IMMEDIATE").execute()?;
        for job in jobs.iter_mut() {
            conn.query("SAVEPOINT write").execute()?;
            // A panicking write fails alone, not the writer: every later
            // write would fail with it.
            let applied =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.apply(conn)))
                    .unwrap_or_else(|_| Err(StoreError::Commit("a write panicked".into())));
            match applied {
                Ok(()) => {
                    conn.query("RELEASE write").execute()?;
                }
                // SQLite rolled the whole transaction back (it may, on a
                // full disk or an I/O error): the batch's earlier writes
                // are gone with it.
                Err(error) if conn.is_autocommit() => return Err(error),
                Err(error) => {
                    tracing::error!(%error, "a write failed; the rest of its batch goes on");
                    conn.query("ROLLBACK TO write").execute()?;
                    conn.query("RELEASE write").execute()?;
                    failed_write = Some(error);
                }
            }
        }
        conn.query("COMMIT").execute()?;
        Ok::<(), StoreError>(())
    })();
    match &commit {
        Ok(()) => match &failed_write {
            None => health.committed(jobs.len() as u64, started),
            Some(error) => health.failed(error),
        },
        Err(error) => {
            tracing::error!(%error, writes = jobs.len(), "a batch of writes failed to commit");
            health.failed(error);
            // Leave no transaction open for the next batch (if there is
            // none, this fails harmlessly): otherwise every later BEGIN
            // would fail.
            let _ = conn.query("ROLLBACK").execute();
            if !conn.is_autocommit()
                && let Err(failure) = conn.query("ROLLBACK").execute()
            {
                tracing::error!(?failure, "the writer cannot roll back its transaction");
            }
        }
    }
    for job in jobs.drain(..) {
        job.answer(commit.as_ref().map(|_| ()));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc as std_mpsc;

    use super::*;
    use crate::store::sqlite::SqliteOptions;

    fn statement(sql: &'static str) -> WriteFn<u64> {
        Box::new(move |conn| Ok(conn.query(sql).execute()?))
    }

    #[tokio::test]
    async fn a_failed_write_is_undone_alone_and_the_rest_of_its_batch_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(SqliteOptions::new(dir.path().join("cairn.db")))
            .await
            .unwrap();
        store
            .write(statement("CREATE TABLE marks (n INTEGER PRIMARY KEY)"))
            .await
            .unwrap();

        // A first write holds the writer until three more are queued, so
        // the three are applied in one batch.
        let (started, applying) = std_mpsc::channel::<()>();
        let (release, held) = std_mpsc::channel::<()>();
        let holder = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .write::<()>(Box::new(move |_| {
                        started.send(()).unwrap();
                        held.recv().unwrap();
                        Ok(())
                    }))
                    .await
            }
        });
        tokio::task::spawn_blocking(move || applying.recv().unwrap())
            .await
            .unwrap();
        let batch = tokio::spawn({
            let store = store.clone();
            async move {
                tokio::join!(
                    store.write(statement("INSERT INTO marks VALUES (1)")),
                    store.write(statement("INSERT INTO no_such_table VALUES (1)")),
                    store.write(statement("INSERT INTO marks VALUES (3)")),
                )
            }
        });
        while store.writes.max_capacity() - store.writes.capacity() < 3 {
            tokio::task::yield_now().await;
        }
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();

        let (first, broken, last) = batch.await.unwrap();
        assert_eq!(first.unwrap(), 1);
        let error = broken.unwrap_err().to_string();
        assert!(error.contains("no such table"), "{error}");
        assert_eq!(last.unwrap(), 1, "the write after the failed one committed");
        let marks = store
            .write(Box::new(|conn| {
                Ok(conn
                    .query("SELECT count(*) FROM marks")
                    .fetch_one()?
                    .first()
                    .as_int())
            }))
            .await
            .unwrap();
        assert_eq!(marks, Some(2), "both good writes of the batch committed");
    }
}
