//! The read-only connections, each serving one read at a time.
//!
//! Not an sqlx pool: that pings every connection it takes back, which is a
//! second round trip to the connection's thread for every read, and doubled
//! the cost of reading an event. A local file cannot drop a connection, so
//! there is nothing to test.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::store::{Result, StoreError};

#[derive(Debug)]
pub(super) struct ReadConnections {
    idle: Mutex<Vec<SqliteConnection>>,
    /// One permit per idle connection.
    available: Semaphore,
}

impl ReadConnections {
    pub(super) async fn open(options: &SqliteConnectOptions, count: u32) -> Result<Self> {
        let mut idle = Vec::new();
        for _ in 0..count.max(1) {
            idle.push(SqliteConnection::connect_with(&options.clone().read_only(true)).await?);
        }
        Ok(Self {
            available: Semaphore::new(idle.len()),
            idle: Mutex::new(idle),
        })
    }

    /// A connection for one read, waiting for one to be free.
    pub(super) async fn get(&self) -> Result<ReadConnection<'_>> {
        let permit = self
            .available
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let conn = self
            .idle
            .lock()
            .expect("the idle list is never left poisoned")
            .pop()
            .expect("a permit is held for every idle connection");
        Ok(ReadConnection {
            conn: Some(conn),
            owner: self,
            _permit: permit,
        })
    }
}

/// A connection taken for one read; given back when dropped (also when the
/// read was abandoned midway: sqlx finishes or discards the statement before
/// the connection's next one).
pub(super) struct ReadConnection<'a> {
    conn: Option<SqliteConnection>,
    owner: &'a ReadConnections,
    // Released after the connection is back in the idle list (fields drop
    // after `Drop::drop`).
    _permit: SemaphorePermit<'a>,
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
                .push(conn);
        }
    }
}
