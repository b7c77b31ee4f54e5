//! Retention, as the writer applies it: one batch of runs at a time, so
//! that the writes of runs going on wait at most one batch.

use super::connection::WriteConnection;
use crate::domain::ModuleDigest;
use crate::store::Result;
use crate::store::retention::{DOOMED_RUNS, RUN_TABLES, UNUSED_BLOBS, UNUSED_VERSIONS};
use crate::store::rows::{Columns, corrupt};

/// Delete one batch of finished runs (see [`DOOMED_RUNS`]); how many.
pub(super) fn purge_runs(conn: &mut WriteConnection, before: i64, roots: u32) -> Result<u64> {
    let doomed = conn
        .query(DOOMED_RUNS)
        .bind(before)
        .bind(roots)
        .fetch_all()?
        .iter()
        .map(|row| row.text("id"))
        .collect::<Result<Vec<String>>>()?;
    if doomed.is_empty() {
        return Ok(0);
    }
    // SQLite has no arrays: the ids go in as one JSON array.
    let ids = serde_json::to_string(&doomed).expect("strings serialise");
    for table in RUN_TABLES {
        conn.query(&format!(
            "DELETE FROM {table} WHERE run_id IN (SELECT value FROM json_each($1))"
        ))
        .bind(ids.as_str())
        .execute()?;
    }
    Ok(conn
        .query("DELETE FROM runs WHERE id IN (SELECT value FROM json_each($1))")
        .bind(ids.as_str())
        .execute()?)
}

/// Delete the module versions no one needs; the blobs that went.
pub(super) fn purge_versions(conn: &mut WriteConnection) -> Result<Vec<ModuleDigest>> {
    conn.query(UNUSED_VERSIONS).execute()?;
    conn.query(UNUSED_BLOBS)
        .fetch_all()?
        .iter()
        .map(|row| ModuleDigest::parse(&row.text("version")?).map_err(corrupt))
        .collect()
}
