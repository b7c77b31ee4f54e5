//! The read-only connections, each serving one read at a time.
//!
//! Not an sqlx pool: that pings every connection it takes back, which is a
//! second round trip to the connection's thread for every read, and doubled
//! the cost of reading an event. A local file cannot drop a connection, so
//! a read that ran to its end needs no check. One that was abandoned midway
//! (its caller's future dropped) is checked before its next use: a
//! connection left inside a transaction would pin an old snapshot for every
//! later read (and keep the WAL from being checkpointed), so it is replaced.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::store::{Result, StoreError};

#[derive(Debug)]
pub(super) struct ReadConnections {
    options: SqliteConnectOptions,
    idle: Mutex<Vec<Idle>>,
    /// One permit per idle connection.
    available: Semaphore,
}

#[derive(Debug)]
struct Idle {
    conn: SqliteConnection,
    /// Given back by a read that did not run to its end.
    abandoned: bool,
}

impl ReadConnections {
    pub(super) async fn open(options: &SqliteConnectOptions, count: u32) -> Result<Self> {
        let options = options.clone().read_only(true);
        let mut idle = Vec::new();
        for _ in 0..count.max(1) {
            idle.push(Idle {
                conn: SqliteConnection::connect_with(&options).await?,
                abandoned: false,
            });
        }
        Ok(Self {
            options,
            available: Semaphore::new(idle.len()),
            idle: Mutex::new(idle),
        })
    }

    /// Run `read` on a connection of its own, waiting for one to be free.
    pub(super) async fn read<T, E>(
        &self,
        read: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T, E>,
    ) -> Result<T>
    where
        StoreError: From<E>,
    {
        let mut conn = self.get().await?;
        let value = read(&mut conn).await?;
        conn.completed = true;
        Ok(value)
    }

    async fn get(&self) -> Result<ReadConnection<'_>> {
        let permit = self
            .available
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let idle = self
            .idle
            .lock()
            .expect("the idle list is never left poisoned")
            .pop()
            .expect("a permit is held for every idle connection");
        let mut taken = ReadConnection {
            conn: Some(idle.conn),
            completed: false,
            owner: self,
            _permit: permit,
        };
        if idle.abandoned && !taken.is_idle().await {
            tracing::warn!("replacing a read connection left inside a transaction");
            taken.conn = Some(SqliteConnection::connect_with(&self.options).await?);
        }
        Ok(taken)
    }
}

/// A connection taken for one read; given back when dropped, marked as
/// abandoned unless the read completed.
struct ReadConnection<'a> {
    conn: Option<SqliteConnection>,
    completed: bool,
    owner: &'a ReadConnections,
    // Released after the connection is back in the idle list (fields drop
    // after `Drop::drop`).
    _permit: SemaphorePermit<'a>,
}

impl ReadConnection<'_> {
    /// Whether the connection is outside any transaction; one that cannot
    /// even say is not.
    async fn is_idle(&mut self) -> bool {
        match self.lock_handle().await {
            // SAFETY: sqlx's lock keeps every other thread off the open
            // handle during this call; get_autocommit only reads a flag.
            Ok(mut locked) => unsafe {
                rusqlite::ffi::sqlite3_get_autocommit(locked.as_raw_handle().as_ptr()) != 0
            },
            Err(_) => false,
        }
    }
}

impl Deref for ReadConnection<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        self.conn.as_ref().expect("held until dropped")
    }
}

impl DerefMut for ReadConnection<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.conn.as_mut().expect("held until dropped")
    }
}

impl Drop for ReadConnection<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.owner
                .idle
                .lock()
                .expect("the idle list is never left poisoned")
                .push(Idle {
                    conn,
                    abandoned: !self.completed,
                });
        }
    }
}
