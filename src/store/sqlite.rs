//! The SQLite connection (bundled SQLite through rusqlite): WAL journal,
//! `synchronous = FULL` so that a committed transition and its outbox rows
//! survive a power cut, and a busy timeout for the odd second opener.

use std::path::Path;

use anyhow::Context;
use rusqlite::types::{Value, ValueRef};

use super::{Db, Dialect, Val, to_sqlite_params};

/// One SQLite connection.
pub struct SqliteDb {
    conn: rusqlite::Connection,
}

impl SqliteDb {
    /// Opens (creating) the database file at `path`.
    pub fn open(path: &Path) -> anyhow::Result<SqliteDb> {
        let conn = rusqlite::Connection::open(path)
            .with_context(|| format!("cannot open the SQLite store {}", path.display()))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000; \
             PRAGMA foreign_keys = ON;",
        )
        .with_context(|| format!("cannot set up the SQLite store {}", path.display()))?;
        Ok(SqliteDb { conn })
    }

    /// A database in memory (tests).
    pub fn memory() -> anyhow::Result<SqliteDb> {
        let conn = rusqlite::Connection::open_in_memory()?;
        conn.execute_batch("PRAGMA foreign_keys = ON;")?;
        Ok(SqliteDb { conn })
    }
}

fn to_value(v: &Val) -> Value {
    match v {
        Val::Int(i) => Value::Integer(*i),
        Val::Real(f) => Value::Real(*f),
        Val::Text(s) => Value::Text(s.clone()),
        Val::Null => Value::Null,
    }
}

impl Db for SqliteDb {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Val]) -> anyhow::Result<u64> {
        let sql = to_sqlite_params(sql);
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .with_context(|| format!("SQLite cannot prepare: {sql}"))?;
        let n = stmt
            .execute(rusqlite::params_from_iter(params.iter().map(to_value)))
            .with_context(|| format!("SQLite statement failed: {sql}"))?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, params: &[Val]) -> anyhow::Result<Vec<Vec<Val>>> {
        let sql = to_sqlite_params(sql);
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .with_context(|| format!("SQLite cannot prepare: {sql}"))?;
        let cols = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter().map(to_value)))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut r = Vec::with_capacity(cols);
            for i in 0..cols {
                r.push(match row.get_ref(i)? {
                    ValueRef::Null => Val::Null,
                    ValueRef::Integer(i) => Val::Int(i),
                    ValueRef::Real(f) => Val::Real(f),
                    ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Val::Text(String::from_utf8_lossy(b).into_owned()),
                });
            }
            out.push(r);
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> anyhow::Result<()> {
        self.conn
            .execute_batch(sql)
            .with_context(|| format!("SQLite batch failed: {sql}"))
    }
}
