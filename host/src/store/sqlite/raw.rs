//! The write connection, driven directly through SQLite's C API.
//!
//! sqlx runs each SQLite connection on a thread of its own, and every
//! statement is a round trip to that thread. For the writer that was the
//! whole host's bottleneck: a batch of ~10 writes took 1.85 ms, nearly all of
//! it threads waiting to be scheduled, and the writer was busy all the time.
//! So the writer thread takes the connection's handle from sqlx (its
//! documented `lock_handle`, which parks sqlx's thread for as long as it is
//! held) and runs a whole batch itself, with no thread hop at all.
//!
//! The API mirrors sqlx's query builder, so the write functions read alike:
//! `conn.query(SQL).bind(a).bind(b).execute()?`. Statements are prepared once
//! and cached. Bound values are borrowed where the caller has them, and
//! handed to SQLite without a copy (`SQLITE_STATIC`): the bindings are
//! cleared before `run` returns, so SQLite never holds them longer than the
//! query does. Rows are copied out, so nothing SQLite owns outlives a call.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_int};
use std::ptr::NonNull;

use libsqlite3_sys as ffi;

use super::super::rows::Columns;
use crate::store::{Result, StoreError};

/// A failed SQLite call: its extended result code and message.
#[derive(Debug)]
pub(super) struct SqliteFailure {
    pub code: c_int,
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

/// The write connection. Lives on the writer thread only (it is not `Send`).
pub(super) struct RawConnection {
    db: NonNull<ffi::sqlite3>,
    statements: HashMap<String, NonNull<ffi::sqlite3_stmt>>,
}

impl RawConnection {
    /// # Safety
    /// `db` must be an open connection that nothing else uses for as long
    /// as this value lives (sqlx's `LockedSqliteHandle` held meanwhile).
    pub unsafe fn new(db: NonNull<ffi::sqlite3>) -> Self {
        Self {
            db,
            statements: HashMap::new(),
        }
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
        // SAFETY: `db` is open (see `new`).
        unsafe { ffi::sqlite3_get_autocommit(self.db.as_ptr()) != 0 }
    }

    fn failure(&self) -> SqliteFailure {
        // SAFETY: `db` is open (see `new`); errmsg returns a NUL-terminated
        // string owned by SQLite, copied at once.
        unsafe {
            SqliteFailure {
                code: ffi::sqlite3_extended_errcode(self.db.as_ptr()),
                message: CStr::from_ptr(ffi::sqlite3_errmsg(self.db.as_ptr()))
                    .to_string_lossy()
                    .into_owned(),
            }
        }
    }

    fn statement(&mut self, sql: &str) -> Result<NonNull<ffi::sqlite3_stmt>, SqliteFailure> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(*statement);
        }
        let mut statement = std::ptr::null_mut();
        let mut tail: *const c_char = std::ptr::null();
        // SAFETY: `sql` is valid for its length; SQLite writes the two
        // out-pointers.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                self.db.as_ptr(),
                sql.as_ptr().cast(),
                sql.len() as c_int,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut statement,
                &mut tail,
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(self.failure());
        }
        let Some(statement) = NonNull::new(statement) else {
            return Err(SqliteFailure {
                code: ffi::SQLITE_MISUSE,
                message: format!("no statement in {sql:?}"),
            });
        };
        // `tail` points just past the statement SQLite compiled, in `sql`.
        let compiled = (tail as usize).saturating_sub(sql.as_ptr() as usize);
        if !sql.get(compiled..).unwrap_or_default().trim().is_empty() {
            // SAFETY: prepared above, not cached, finalized once.
            unsafe { ffi::sqlite3_finalize(statement.as_ptr()) };
            return Err(SqliteFailure {
                code: ffi::SQLITE_MISUSE,
                message: format!("one statement at a time, got more in {sql:?}"),
            });
        }
        self.statements.insert(sql.to_owned(), statement);
        Ok(statement)
    }

    /// Run `sql` with `values`, collecting its rows; the number of rows it
    /// changed.
    fn run(
        &mut self,
        sql: &str,
        values: &[Value<'_>],
        rows: &mut Vec<Row>,
    ) -> Result<u64, SqliteFailure> {
        let statement = self.statement(sql)?;
        // Reset and unbound whichever way this ends, so the statement is
        // ready for its next use and holds no pointer into `values`.
        let bound = Bound(statement);
        let stmt = bound.0.as_ptr();
        for (index, value) in values.iter().enumerate() {
            let index = index as c_int + 1;
            // SAFETY: `stmt` is a live prepared statement. Text and blobs are
            // bound STATIC: `values` outlives the statement's use here, and
            // `bound` clears the bindings before this function returns.
            let rc = unsafe {
                match value {
                    Value::Null => ffi::sqlite3_bind_null(stmt, index),
                    Value::Int(v) => ffi::sqlite3_bind_int64(stmt, index, *v),
                    // The 64-bit forms: a length past `c_int` is refused
                    // with SQLITE_TOOBIG, never wrapped.
                    Value::Text(v) => ffi::sqlite3_bind_text64(
                        stmt,
                        index,
                        v.as_ptr().cast(),
                        v.len() as u64,
                        ffi::SQLITE_STATIC(),
                        ffi::SQLITE_UTF8 as u8,
                    ),
                    Value::Blob(v) => ffi::sqlite3_bind_blob64(
                        stmt,
                        index,
                        v.as_ptr().cast(),
                        v.len() as u64,
                        ffi::SQLITE_STATIC(),
                    ),
                }
            };
            if rc != ffi::SQLITE_OK {
                return Err(self.failure());
            }
        }
        loop {
            // SAFETY: as above.
            match unsafe { ffi::sqlite3_step(stmt) } {
                ffi::SQLITE_ROW => rows.push(Row::read(stmt).map_err(|what| SqliteFailure {
                    // SQLite fails these reads only when out of memory.
                    code: ffi::SQLITE_NOMEM,
                    message: what,
                })?),
                ffi::SQLITE_DONE => break,
                _ => return Err(self.failure()),
            }
        }
        // SAFETY: `db` is open.
        Ok(unsafe { ffi::sqlite3_changes64(self.db.as_ptr()) } as u64)
    }
}

/// A cached statement in use: reset, and its bindings cleared, when dropped.
struct Bound(NonNull<ffi::sqlite3_stmt>);

impl Drop for Bound {
    fn drop(&mut self) {
        // SAFETY: the statement is live (cached until the connection is
        // dropped); reset and clear_bindings accept any state.
        unsafe {
            ffi::sqlite3_reset(self.0.as_ptr());
            ffi::sqlite3_clear_bindings(self.0.as_ptr());
        }
    }
}

impl Drop for RawConnection {
    fn drop(&mut self) {
        for (_, statement) in self.statements.drain() {
            // SAFETY: each cached statement is finalized exactly once, before
            // the connection is handed back to sqlx.
            unsafe { ffi::sqlite3_finalize(statement.as_ptr()) };
        }
    }
}

/// A statement with its values, ready to run.
pub(super) struct Query<'c, 'q> {
    conn: &'c mut RawConnection,
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
    /// The current row of `stmt`, or what could not be read.
    fn read(stmt: *mut ffi::sqlite3_stmt) -> Result<Row, String> {
        // SAFETY: `stmt` has just returned SQLITE_ROW; every pointer SQLite
        // returns here is valid until the next step, and is copied at once.
        // NULL pointers (SQLite out of memory) are checked before use.
        unsafe {
            let count = ffi::sqlite3_column_count(stmt);
            let mut columns = Vec::with_capacity(count.max(0) as usize);
            for i in 0..count {
                let name = ffi::sqlite3_column_name(stmt, i);
                if name.is_null() {
                    return Err(format!("the name of column {i} could not be read"));
                }
                let name = CStr::from_ptr(name).to_string_lossy().into_owned();
                let value = match ffi::sqlite3_column_type(stmt, i) {
                    ffi::SQLITE_NULL => Value::Null,
                    ffi::SQLITE_INTEGER => Value::Int(ffi::sqlite3_column_int64(stmt, i)),
                    ffi::SQLITE_BLOB => Value::Blob(Cow::Owned(column_bytes(
                        stmt,
                        i,
                        ffi::sqlite3_column_blob(stmt, i).cast(),
                        &name,
                    )?)),
                    // Text, and floats read as text (Cairn stores none).
                    _ => {
                        let bytes =
                            column_bytes(stmt, i, ffi::sqlite3_column_text(stmt, i), &name)?;
                        Value::Text(Cow::Owned(String::from_utf8(bytes).map_err(|_| {
                            format!("column {name:?} holds text that is not UTF-8")
                        })?))
                    }
                };
                columns.push((name, value));
            }
            Ok(Row { columns })
        }
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

/// The bytes of column `i` at `data` (from `sqlite3_column_text`/`_blob`,
/// called just before).
///
/// # Safety
/// `stmt` is on a row, and `data` was returned for column `i` of it.
unsafe fn column_bytes(
    stmt: *mut ffi::sqlite3_stmt,
    i: c_int,
    data: *const u8,
    name: &str,
) -> Result<Vec<u8>, String> {
    // SAFETY: see the function's contract; the length is asked after the
    // data, as SQLite requires.
    let len = unsafe { ffi::sqlite3_column_bytes(stmt, i) }.max(0) as usize;
    if data.is_null() {
        // An empty value has no data; a non-empty one without is a failure.
        return if len == 0 {
            Ok(Vec::new())
        } else {
            Err(format!("column {name:?} could not be read"))
        };
    }
    // SAFETY: SQLite guarantees `len` bytes at `data` until the next step.
    Ok(unsafe { std::slice::from_raw_parts(data, len) }.to_vec())
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

/// Whether the connection behind a handle sqlx has locked for us is outside
/// any transaction.
pub fn handle_is_idle(handle: NonNull<ffi::sqlite3>) -> bool {
    // SAFETY: the caller holds sqlx's lock on the open handle, so no other
    // thread uses it during this call; get_autocommit only reads a flag.
    unsafe { ffi::sqlite3_get_autocommit(handle.as_ptr()) != 0 }
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, SqliteConnection};

    use super::*;

    /// Run `check` on a raw handle to a fresh in-memory database.
    async fn with_raw(check: impl FnOnce(&mut RawConnection)) {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        let mut locked = conn.lock_handle().await.unwrap();
        // SAFETY: the handle is locked for the whole test; `raw` goes first.
        let mut raw = unsafe { RawConnection::new(locked.as_raw_handle()) };
        check(&mut raw);
        drop(raw);
        drop(locked);
    }

    #[tokio::test]
    async fn values_go_in_and_come_back_out_with_their_types() {
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
        })
        .await;
    }

    #[tokio::test]
    async fn a_unique_violation_is_told_apart_and_leaves_the_statement_reusable() {
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
        })
        .await;
    }

    #[tokio::test]
    async fn text_that_is_not_utf8_is_an_error_not_rewritten() {
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
        })
        .await;
    }

    #[tokio::test]
    async fn more_than_one_statement_is_refused() {
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
        })
        .await;
    }
}
