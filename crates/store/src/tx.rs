//! Database transactions that cannot outlive a cancelled caller.
//!
//! sqlx 0.8.6's `Pool::begin` sends `BEGIN` and counts the transaction only once the answer
//! has arrived. A future dropped in between (a client that went away, a timeout) queues no
//! `ROLLBACK`, and the connection goes back to the pool inside an open transaction: the next
//! caller's single-statement writes then never commit and hold their locks (found under load
//! by bench/; `a_cancelled_transaction_never_leaks_into_the_next_use_of_its_connection`).
//!
//! [`Tx`] owns its pooled connection from before `BEGIN` until `COMMIT` has been answered.
//! Dropped at any point in between (an early return, an error, a cancelled caller), it hands
//! the connection to a task that sends `ROLLBACK` (after whatever answers are still pending)
//! and only then lets it go back to the pool; if that fails, or no runtime is there to run
//! it, the connection is detached and closed, and the database rolls back by itself. Either
//! way no connection re-enters the pool inside a transaction.

use crate::Result;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor};
use std::ops::{Deref, DerefMut};

pub(crate) struct Tx {
    /// `Some` while the transaction may be open; taken back by `commit`.
    conn: Option<PoolConnection<Any>>,
}

impl Tx {
    /// Takes a connection from `pool` and starts a transaction on it.
    pub(crate) async fn begin(pool: &AnyPool) -> Result<Tx> {
        let conn = pool.acquire().await?;
        // Armed before `BEGIN` is sent: from here on, dropping `tx` closes the connection.
        let mut tx = Tx { conn: Some(conn) };
        tx.execute("BEGIN").await?;
        Ok(tx)
    }

    /// Commits; the connection returns to the pool only once the commit has been answered.
    pub(crate) async fn commit(mut self) -> Result<()> {
        self.execute("COMMIT").await?;
        // Disarmed: dropping the connection now returns it to the pool.
        drop(self.conn.take());
        Ok(())
    }
}

impl Deref for Tx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match &self.conn {
            Some(conn) => conn,
            // `conn` is taken only by `commit`, which consumes the `Tx`.
            None => unreachable!("a Tx is used after its commit"),
        }
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match &mut self.conn {
            Some(conn) => conn,
            None => unreachable!("a Tx is used after its commit"),
        }
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        // Not committed: an error, an early return, or the caller was cancelled.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    // `ROLLBACK` outside a transaction (BEGIN never reached the server) only
                    // draws a warning; anything else means the connection is unusable.
                    if conn.execute("ROLLBACK").await.is_ok() {
                        drop(conn);
                    } else {
                        drop(conn.detach());
                    }
                });
            }
            Err(_) => drop(conn.detach()),
        }
    }
}
