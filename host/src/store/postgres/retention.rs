//! Retention on PostgreSQL: one batch of runs per transaction.

use super::PgStore;
use crate::domain::ModuleDigest;
use crate::store::Result;
use crate::store::retention::{DOOMED_RUNS, RUN_TABLES, UNUSED_BLOBS, UNUSED_VERSIONS};
use crate::store::rows::corrupt;

impl PgStore {
    pub(super) async fn purge_run_batch(&self, before: i64, roots: u32) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let doomed: Vec<String> = sqlx::query_scalar(DOOMED_RUNS)
            .bind(before)
            .bind(i64::from(roots))
            .fetch_all(&mut *tx)
            .await?;
        if doomed.is_empty() {
            return Ok(0);
        }
        for table in RUN_TABLES {
            sqlx::query(&format!("DELETE FROM {table} WHERE run_id = ANY($1)"))
                .bind(&doomed)
                .execute(&mut *tx)
                .await?;
        }
        let deleted = sqlx::query("DELETE FROM runs WHERE id = ANY($1)")
            .bind(&doomed)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }

    pub(super) async fn purge_unused_versions(&self) -> Result<Vec<ModuleDigest>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(UNUSED_VERSIONS).execute(&mut *tx).await?;
        let blobs: Vec<String> = sqlx::query_scalar(UNUSED_BLOBS).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        blobs
            .iter()
            .map(|version| ModuleDigest::parse(version).map_err(corrupt))
            .collect()
    }
}
