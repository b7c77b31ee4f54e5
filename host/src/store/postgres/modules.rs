//! Deployments: a module version's bytes, its routes manifest and its
//! record, in one transaction, announced to every host after the commit.

use super::PgStore;
use super::checkout::Checkout;
use crate::store::rows::{corrupt, module_version_from_row};
use crate::store::statements::{
    INSERT_MODULE_BLOB, INSERT_MODULE_VERSION, MODULE_VERSION, MODULE_VERSION_EXISTS,
};
use crate::store::{Change, NewModuleVersion, PutModule, Result};

impl PgStore {
    pub(super) async fn put_module(&self, m: NewModuleVersion) -> Result<PutModule> {
        let mut conn = Checkout::take(&self.pool).await?;
        let mut tx = conn.begin().await?;
        sqlx::query(INSERT_MODULE_BLOB)
            .bind(m.version.as_str())
            .bind(&m.bytes)
            .execute(&mut *tx)
            .await?;
        // Deployments of one module are serialised by this row lock.
        sqlx::query(
            "INSERT INTO module_routes (name, manifest) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET manifest = excluded.manifest",
        )
        .bind(m.name.as_str())
        .bind(&m.routes)
        .execute(&mut *tx)
        .await?;
        let current: Option<String> = sqlx::query_scalar(
            "SELECT version FROM module_versions WHERE name = $1 ORDER BY deployed_at DESC, seq DESC LIMIT 1",
        )
        .bind(m.name.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let known: bool = sqlx::query_scalar(MODULE_VERSION_EXISTS)
            .bind(m.name.as_str())
            .bind(m.version.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let settings = serde_json::to_string(&m.settings).map_err(corrupt)?;
        if known {
            let is_current = current.as_deref() == Some(m.version.as_str());
            sqlx::query(
                "UPDATE module_versions SET settings = $1,
                     deployed_at = CASE WHEN $2 THEN deployed_at ELSE $3 END,
                     seq = CASE WHEN $2 THEN seq ELSE nextval('module_versions_seq_seq') END
                 WHERE name = $4 AND version = $5",
            )
            .bind(&settings)
            .bind(is_current)
            .bind(m.now)
            .bind(m.name.as_str())
            .bind(m.version.as_str())
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(INSERT_MODULE_VERSION)
                .bind(m.name.as_str())
                .bind(m.version.as_str())
                .bind(m.kind.as_str())
                .bind(serde_json::to_string(&m.workflows).map_err(corrupt)?)
                .bind(m.bytes.len() as i64)
                .bind(m.now)
                .bind(&settings)
                .execute(&mut *tx)
                .await?;
        }
        let row = sqlx::query(MODULE_VERSION)
            .bind(m.name.as_str())
            .bind(m.version.as_str())
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        self.announce([Change::Deployed(m.name.clone())]);
        Ok(PutModule {
            created: !known,
            module: module_version_from_row(&row)?,
        })
    }
}
