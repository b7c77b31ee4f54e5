//! The writer's connection: a rusqlite connection of its own, on the same
//! database file and the same `libsqlite3-sys` that sqlx links.
//!
//! sqlx runs each SQLite connection on a thread of its own, and every
//! statement is a round trip to that thread. For the writer that was the
//! whole host's bottleneck: a batch of ~10 writes took 1.85 ms, nearly all of
//! it threads waiting to be scheduled, and the writer was busy all the time.
//! So the writer thread opens a connection itself and runs a whole batch on
//! it, with no thread hop at all.
//!
//! The API mirrors sqlx's query builder, so the write functions read alike:
//! `conn.query(SQL).bind(a).bind(b).execute()?`. Statements are prepared once
//! and cached (the cache holds every statement the writer runs). Bound
//! values are borrowed where the caller has them; rows are copied out, so
//! nothing SQLite owns outlives a call.

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql, ffi};

use super::super::rows::Columns;
use super::Synchronous;
use crate::store::{Result, StoreError};

/// How long a write waits for a lock another connection holds (a reader's
/// checkpoint, `cairn backup`), as sqlx's connections do.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// More than the writer's distinct statements, so none is ever prepared twice.
const STATEMENT_CACHE: usize = 256;

/// A failed SQLite call: its extended result code and message.
#[derive(Debug)]
pub(super) struct SqliteFailure {
    pub code: std::ffi::c_int,
    pub message: String,
}

impl SqliteFailure {
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self.code,
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        )
    }
}

impl From<SqliteFailure> for StoreError {
    fn from(failure: SqliteFailure) -> Self {
        let detail = format!("{} (code {})", failure.message, failure.code);
        // The primary code: SQLITE_FULL is a full disk or a reached size limit.
        if failure.code & 0xff == ffi::SQLITE_FULL {
            StoreError::StorageFull(detail)
        } else {
            StoreError::Sqlite(detail)
        }
    }
}

/// A value bound to a statement (borrowed where the caller has it) or read
/// from a row (owned).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value<'a> {
    Null,
    Int(i64),
    Text(Cow<'a, str>),
    Blob(Cow<'a, [u8]>),
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<u32> for Value<'_> {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Int(i64::from(v))
    }
}
impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(Cow::Borrowed(v))
    }
}
impl From<String> for Value<'_> {
    fn from(v: String) -> Self {
        Value::Text(Cow::Owned(v))
    }
}
impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Text(Cow::Borrowed(v))
    }
}
impl<'a> From<&'a Vec<u8>> for Value<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Value::Blob(Cow::Borrowed(v))
    }
}
impl<'a> From<&'a Option<String>> for Value<'a> {
    fn from(v: &'a Option<String>) -> Self {
        v.as_deref().into()
    }
}
impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// The write connection. Lives on the writer thread only.
pub(super) struct WriteConnection {
    conn: Connection,
}

impl WriteConnection {
    /// Open the database at `path`, which sqlx has created and migrated,
    /// with the settings of the host's other connections.
    pub fn open(path: &Path, synchronous: Synchronous) -> Result<Self, SqliteFailure> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let synchronous = match synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", synchronous)?;
        Ok(Self::with(conn))
    }

    fn with(conn: Connection) -> Self {
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Self { conn }
    }

    pub fn query<'q>(&mut self, sql: &'q str) -> Query<'_, 'q> {
        Query {
            conn: self,
            sql,
            values: Vec::new(),
        }
    }

    /// Whether no transaction is open.
    pub fn is_autocommit(&self) -> bool {
        self.conn.is_autocommit()
    }

    /// Run `sql` with `values`, collecting its rows; the number of rows it
    /// changed.
    fn run(
        &mut self,
        sql: &str,
        values: &[Value<'_>],
        rows: &mut Vec<Row>,
    ) -> Result<u64, SqliteFailure> {
        if !is_one_statement(sql) {
            return Err(SqliteFailure {
                code: ffi::SQLITE_MISUSE,
                message: format!("one statement at a time, got more in {sql:?}"),
            });
        }
        // Back in the cache when dropped: reset, its bindings cleared.
        let mut statement = self.conn.prepare_cached(sql)?;
        for (index, value) in values.iter().enumerate() {
            statement.raw_bind_parameter(index + 1, value)?;
        }
        let mut found = statement.raw_query();
        while let Some(row) = found.next()? {
            rows.push(Row::read(row)?);
        }
        drop(found);
        drop(statement);
        Ok(self.conn.changes())
    }
}

/// Whether `sql` holds one statement: nothing but blanks and semicolons
/// after its first semicolon. (SQLite would run the first and ignore the
/// rest; none of Cairn's statements has a semicolon inside a literal.)
fn is_one_statement(sql: &str) -> bool {
    sql.split_once(';')
        .is_none_or(|(_, rest)| rest.chars().all(|c| c == ';' || c.is_whitespace()))
}

impl From<rusqlite::Error> for SqliteFailure {
    fn from(error: rusqlite::Error) -> Self {
        match error {
            rusqlite::Error::SqliteFailure(failure, message) => SqliteFailure {
                code: failure.extended_code,
                message: message.unwrap_or_else(|| failure.to_string()),
            },
            other => SqliteFailure {
                code: ffi::SQLITE_MISUSE,
                message: other.to_string(),
            },
        }
    }
}

impl ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(*v),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
            Value::Blob(v) => ValueRef::Blob(v),
        }))
    }
}

/// A statement with its values, ready to run.
pub(super) struct Query<'c, 'q> {
    conn: &'c mut WriteConnection,
    sql: &'q str,
    values: Vec<Value<'q>>,
}

impl<'q> Query<'_, 'q> {
    pub fn bind(mut self, value: impl Into<Value<'q>>) -> Self {
        self.values.push(value.into());
        self
    }

    /// Rows changed.
    pub fn execute(self) -> Result<u64, SqliteFailure> {
        self.conn.run(self.sql, &self.values, &mut Vec::new())
    }

    pub fn fetch_all(self) -> Result<Vec<Row>, SqliteFailure> {
        let mut rows = Vec::new();
        self.conn.run(self.sql, &self.values, &mut rows)?;
        Ok(rows)
    }

    pub fn fetch_optional(self) -> Result<Option<Row>, SqliteFailure> {
        Ok(self.fetch_all()?.into_iter().next())
    }

    pub fn fetch_one(self) -> Result<Row, SqliteFailure> {
        let sql = self.sql;
        self.fetch_optional()?.ok_or_else(|| SqliteFailure {
            code: ffi::SQLITE_NOTFOUND,
            message: format!("no row from {sql:?}"),
        })
    }
}

impl Value<'_> {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }

    pub fn into_text(self) -> Option<String> {
        match self {
            Value::Text(v) => Some(v.into_owned()),
            _ => None,
        }
    }
}

/// A row, copied out of SQLite.
#[derive(Debug)]
pub(super) struct Row {
    columns: Vec<(String, Value<'static>)>,
}

impl Row {
    /// The current row of a query, copied out.
    fn read(row: &rusqlite::Row<'_>) -> Result<Row, SqliteFailure> {
        let statement = row.as_ref();
        let mut columns = Vec::with_capacity(statement.column_count());
        for i in 0..statement.column_count() {
            let name = statement.column_name(i)?.to_owned();
            let value = match row.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(v) => Value::Int(v),
                ValueRef::Blob(v) => Value::Blob(Cow::Owned(v.to_vec())),
                ValueRef::Text(v) => {
                    Value::Text(Cow::Owned(String::from_utf8(v.to_vec()).map_err(|_| {
                        SqliteFailure {
                            code: ffi::SQLITE_MISMATCH,
                            message: format!("column {name:?} holds text that is not UTF-8"),
                        }
                    })?))
                }
                // Floats, as text (Cairn stores none).
                ValueRef::Real(v) => Value::Text(Cow::Owned(v.to_string())),
            };
            columns.push((name, value));
        }
        Ok(Row { columns })
    }

    fn value(&self, column: &str) -> Result<&Value<'static>> {
        self.columns
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, value)| value)
            .ok_or_else(|| StoreError::Corrupt(format!("no column {column:?} in the row")))
    }

    /// The value of the row's first column.
    pub fn first(&self) -> &Value<'static> {
        self.columns
            .first()
            .map_or(&Value::Null, |(_, value)| value)
    }
}

fn wrong_type(column: &str, value: &Value<'_>, expected: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "column {column:?} holds {value:?}, expected {expected}"
    ))
}

impl Columns for Row {
    fn text(&self, column: &str) -> Result<String> {
        self.maybe_text(column)?
            .ok_or_else(|| wrong_type(column, &Value::Null, "text"))
    }
    fn maybe_text(&self, column: &str) -> Result<Option<String>> {
        match self.value(column)? {
            Value::Null => Ok(None),
            Value::Text(v) => Ok(Some(v.to_string())),
            other => Err(wrong_type(column, other, "text")),
        }
    }
    fn int(&self, column: &str) -> Result<i64> {
        self.maybe_int(column)?
            .ok_or_else(|| wrong_type(column, &Value::Null, "an integer"))
    }
    fn maybe_int(&self, column: &str) -> Result<Option<i64>> {
        match self.value(column)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            other => Err(wrong_type(column, other, "an integer")),
        }
    }
    fn flag(&self, column: &str) -> Result<bool> {
        Ok(self.int(column)? != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run `check` on a fresh in-memory database.
    fn with_raw(check: impl FnOnce(&mut WriteConnection)) {
        check(&mut WriteConnection::with(
            Connection::open_in_memory().unwrap(),
        ));
    }

    #[test]
    fn values_go_in_and_come_back_out_with_their_types() {
        with_raw(|conn| {
            conn.query("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER, b BLOB, maybe TEXT)")
                .execute()
                .unwrap();
            let changed = conn
                .query("INSERT INTO t VALUES (?, ?, ?, ?)")
                .bind("a")
                .bind(7_i64)
                .bind(&vec![0_u8, 1, 2])
                .bind(None::<String>)
                .execute()
                .unwrap();
            assert_eq!(changed, 1);
            let row = conn
                .query("SELECT id, n, b, maybe FROM t WHERE id = ?")
                .bind("a")
                .fetch_one()
                .unwrap();
            assert_eq!(row.text("id").unwrap(), "a");
            assert_eq!(row.int("n").unwrap(), 7);
            assert_eq!(row.value("b").unwrap(), &Value::Blob(vec![0, 1, 2].into()));
            assert_eq!(row.maybe_text("maybe").unwrap(), None);
            assert!(row.int("id").is_err(), "text is not read as an integer");
            assert!(row.text("missing").is_err());
            assert!(
                conn.query("SELECT id FROM t WHERE id = ?")
                    .bind("b")
                    .fetch_optional()
                    .unwrap()
                    .is_none()
            );
        });
    }

    #[test]
    fn a_unique_violation_is_told_apart_and_leaves_the_statement_reusable() {
        with_raw(|conn| {
            conn.query("CREATE TABLE t (id TEXT PRIMARY KEY)")
                .execute()
                .unwrap();
            let insert = "INSERT INTO t VALUES (?)";
            conn.query(insert).bind("a").execute().unwrap();
            let failure = conn.query(insert).bind("a").execute().unwrap_err();
            assert!(failure.is_unique_violation(), "{failure:?}");
            // The cached statement was reset: it runs again.
            assert_eq!(conn.query(insert).bind("b").execute().unwrap(), 1);
            let syntax = conn.query("SELEKT 1").execute().unwrap_err();
            assert!(!syntax.is_unique_violation());
            assert!(syntax.message.contains("syntax error"), "{syntax:?}");
        });
    }

    #[test]
    fn text_that_is_not_utf8_is_an_error_not_rewritten() {
        with_raw(|conn| {
            let failure = conn
                .query("SELECT CAST(x'ff' AS TEXT)")
                .fetch_one()
                .unwrap_err();
            assert!(failure.message.contains("not UTF-8"), "{failure:?}");
            assert_eq!(
                conn.query("SELECT '', x''").fetch_one().unwrap().columns,
                vec![
                    ("''".to_owned(), Value::Text(String::new().into())),
                    ("x''".to_owned(), Value::Blob(Vec::new().into()))
                ]
            );
        });
    }

    #[test]
    fn more_than_one_statement_is_refused() {
        with_raw(|conn| {
            let failure = conn.query("SELECT 1; SELECT 2").execute().unwrap_err();
            assert!(
                failure.message.contains("one statement at a time"),
                "{failure:?}"
            );
            // A trailing semicolon is one statement.
            assert_eq!(
                conn.query("SELECT 1;").fetch_one().unwrap().first(),
                &Value::Int(1)
            );
        });
    }
}
