//! A pooled connection taken for one use, given back to the pool only when
//! its session is known to be outside any transaction sqlx does not track.
//!
//! sqlx-postgres (0.8.6 and 0.9.0; upstream issue 4393, fixed by pull
//! request 4394 in no release yet) sends `BEGIN` and counts the transaction
//! only once the server has answered. A future dropped in between (an
//! aborted task, a timeout, a client that hung up) queues no `ROLLBACK`,
//! and the pool takes the connection back still inside that transaction:
//! whatever the next borrower writes there is answered as done yet stays
//! invisible, and is lost with the connection. So a connection whose
//! `BEGIN` did not complete is never given back: it is closed (the server
//! rolls the transaction back) and the pool opens a fresh one.
//!
//! Every other way a use can end is already safe with sqlx: a transaction
//! it tracks is rolled back when dropped, and a statement abandoned midway
//! is drained by the pool's check on release.

use std::ops::{Deref, DerefMut};

use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, PgPool, Postgres, Transaction};

use crate::store::Result;

pub(super) struct Checkout {
    conn: Option<PoolConnection<Postgres>>,
    /// False from the moment a `BEGIN` is sent until sqlx has counted it.
    reusable: bool,
}

impl Checkout {
    pub(super) async fn take(pool: &PgPool) -> Result<Self> {
        Ok(Self {
            conn: Some(pool.acquire().await?),
            reusable: true,
        })
    }

    /// Begin a transaction on the connection. If this is abandoned or fails
    /// before the server's answer, the connection is discarded.
    pub(super) async fn begin(&mut self) -> Result<Transaction<'_, Postgres>> {
        let Self { conn, reusable } = self;
        let conn = conn.as_mut().expect("held until dropped");
        *reusable = false;
        let tx = conn.begin().await?;
        *reusable = true;
        Ok(tx)
    }
}

impl Deref for Checkout {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn.as_ref().expect("held until dropped")
    }
}

impl DerefMut for Checkout {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn.as_mut().expect("held until dropped")
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && !self.reusable
        {
            // Out of the pool, then dropped: its socket closes, and the
            // server ends the session and rolls its transaction back.
            drop(conn.detach());
            tracing::debug!("discarded a connection whose BEGIN was abandoned");
        }
    }
}

impl std::fmt::Debug for Checkout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkout")
            .field("reusable", &self.reusable)
            .finish()
    }
}
