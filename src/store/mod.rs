//! The durable store of alerts, their transitions, the push outbox, duty
//! tasks and the roster: SQLite by default (a file in the data directory),
//! PostgreSQL when `alerting.store` is a `postgres://` URL.
//!
//! Both speak the same SQL through the small [`Db`] trait: `$1`-style
//! parameters, `BIGINT` milliseconds for times, `TEXT` for JSON. Schema
//! changes are numbered migrations applied once, in order, at open
//! ([`migrations`]). One connection behind a mutex: alert transitions are
//! rare next to readings, and one writer keeps every transition and its
//! outbox rows in one transaction.

pub mod alerts;
mod migrations;
mod pg_tls;
mod postgres;
mod sqlite;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use anyhow::Context;

pub use postgres::fresh_schema;

pub use alerts::{
    AlertQuery, AlertRecord, Calibration, CommittedTransition, NewTransition, OutboxView,
    RosterEntry, StatusDeclaration, TaskQuery, TaskRecord, TransitionRecord,
};

/// One SQL value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// `BIGINT`.
    Int(i64),
    /// `DOUBLE PRECISION` / `REAL`.
    Real(f64),
    /// `TEXT`.
    Text(String),
    /// `NULL`.
    Null,
}

impl Val {
    /// The integer, if this is one.
    pub fn int(&self) -> Option<i64> {
        match self {
            Val::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The float (integers widen), if this is a number.
    pub fn real(&self) -> Option<f64> {
        match self {
            Val::Real(f) => Some(*f),
            Val::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The text, if this is text.
    pub fn text(&self) -> Option<&str> {
        match self {
            Val::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::Int(v)
    }
}

impl From<&str> for Val {
    fn from(v: &str) -> Val {
        Val::Text(v.to_string())
    }
}

impl From<String> for Val {
    fn from(v: String) -> Val {
        Val::Text(v)
    }
}

impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Val {
        v.map_or(Val::Null, Val::Int)
    }
}

impl From<Option<f64>> for Val {
    fn from(v: Option<f64>) -> Val {
        v.filter(|f| f.is_finite()).map_or(Val::Null, Val::Real)
    }
}

impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Val {
        v.map_or(Val::Null, Val::Text)
    }
}

impl From<bool> for Val {
    fn from(v: bool) -> Val {
        Val::Int(v as i64)
    }
}

/// Which SQL dialect a connection speaks (only DDL differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite 3.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A connection: the few calls the store needs, the same on both databases.
pub trait Db: Send {
    /// Which database this is.
    fn dialect(&self) -> Dialect;
    /// Runs one statement; returns the rows it changed.
    fn execute(&mut self, sql: &str, params: &[Val]) -> anyhow::Result<u64>;
    /// Runs one query; returns its rows.
    fn query(&mut self, sql: &str, params: &[Val]) -> anyhow::Result<Vec<Vec<Val>>>;
    /// Runs several statements without parameters (DDL, `BEGIN`, …).
    fn batch(&mut self, sql: &str) -> anyhow::Result<()>;
}

/// The store: one connection and the queries on it.
pub struct Store {
    db: Mutex<Box<dyn Db>>,
    /// Human description (`sqlite:data/minewatch.db`, `postgres://…@host/db`).
    pub describe: String,
}

impl Store {
    /// Opens `url` — `sqlite:PATH`, a bare path, `sqlite::memory:` or
    /// `postgres://…` — and brings its schema up to date. Blocks: call it
    /// from a plain thread or `spawn_blocking`.
    pub fn open(url: &str) -> anyhow::Result<Store> {
        let store = Store::connect(url)?;
        store.tx(|db| migrations::apply(db, chrono::Utc::now().timestamp_millis()))?;
        Ok(store)
    }

    /// Opens `url` as [`Store::open`] does, but leaves the schema as it is.
    fn connect(url: &str) -> anyhow::Result<Store> {
        let (db, describe): (Box<dyn Db>, String) =
            if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                let db = postgres::PgDb::connect(url)?;
                (Box::new(db), crate::redact::secrets(url))
            } else {
                let path = url.strip_prefix("sqlite:").unwrap_or(url);
                let db = if path == ":memory:" {
                    sqlite::SqliteDb::memory()?
                } else {
                    let p = Path::new(path);
                    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir).with_context(|| {
                            format!("cannot create the store's directory {}", dir.display())
                        })?;
                    }
                    // Owner-only before SQLite writes a byte: it gives its
                    // -wal and -shm files the database file's mode.
                    crate::private_files::private_file(p).with_context(|| {
                        format!("cannot create the store {} as owner-only", p.display())
                    })?;
                    for suffix in ["-wal", "-shm"] {
                        let mut side = p.as_os_str().to_owned();
                        side.push(suffix);
                        crate::private_files::tighten_if_present(Path::new(&side)).with_context(
                            || format!("cannot make {} owner-only", Path::new(&side).display()),
                        )?;
                    }
                    sqlite::SqliteDb::open(p)?
                };
                (Box::new(db), format!("sqlite:{path}"))
            };
        Ok(Store {
            db: Mutex::new(db),
            describe,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Box<dyn Db>> {
        // A panic while holding the lock leaves the connection usable: every
        // write runs in a transaction that the panic rolled back (or that
        // the next BEGIN fails on, which `tx` then reports).
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one transaction: committed when it returns `Ok`, rolled
    /// back otherwise.
    pub fn tx<T>(&self, f: impl FnOnce(&mut dyn Db) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let mut db = self.lock();
        let begin = match db.dialect() {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        };
        db.batch(begin)
            .context("cannot begin a store transaction")?;
        match f(&mut **db) {
            Ok(v) => {
                db.batch("COMMIT")
                    .context("cannot commit a store transaction")?;
                Ok(v)
            }
            Err(e) => {
                if let Err(r) = db.batch("ROLLBACK") {
                    tracing::error!(error = %r, "store rollback failed");
                }
                Err(e)
            }
        }
    }

    /// Runs `f` on the connection without a transaction (reads).
    pub fn read<T>(&self, f: impl FnOnce(&mut dyn Db) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let mut db = self.lock();
        f(&mut **db)
    }
}

/// Rewrites `$N` parameters to SQLite's `?N`.
fn to_sqlite_params(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod testing {
    //! Opens a store for tests: SQLite in memory, or a fresh schema in the
    //! PostgreSQL at `MINEWATCH_TEST_PG` when that is set.

    use super::Store;

    /// A fresh, empty store; `name` keeps PostgreSQL schemas apart.
    pub fn store(name: &str) -> Store {
        match std::env::var("MINEWATCH_TEST_PG") {
            Ok(url) if !url.is_empty() => {
                let url = super::fresh_schema(&url, name).expect("test schema");
                Store::open(&url).expect("open postgres store")
            }
            _ => Store::open("sqlite::memory:").expect("open sqlite store"),
        }
    }

    /// A fresh store whose schema stops at migration `version` (to test the
    /// migrations after it on data written by an older minewatch).
    pub fn store_at(name: &str, version: i64) -> Store {
        let store = match std::env::var("MINEWATCH_TEST_PG") {
            Ok(url) if !url.is_empty() => {
                let url = super::fresh_schema(&url, name).expect("test schema");
                Store::connect(&url).expect("connect postgres store")
            }
            _ => Store::connect("sqlite::memory:").expect("open sqlite store"),
        };
        store
            .tx(|db| {
                super::migrations::apply_up_to(db, chrono::Utc::now().timestamp_millis(), version)
            })
            .expect("old schema");
        store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_rewritten_for_sqlite() {
        assert_eq!(
            to_sqlite_params("SELECT a FROM t WHERE b = $1 AND c > $12"),
            "SELECT a FROM t WHERE b = ?1 AND c > ?12"
        );
    }

    #[test]
    fn the_newest_status_declaration_of_each_mine_stands() {
        use crate::model::MineStatus;
        let store = testing::store("store_mine_status");
        let declare = |mine: &str, status, reason: &str, at| {
            let d = StatusDeclaration {
                id: 0,
                mine: mine.into(),
                status,
                reason: reason.into(),
                by: "county-140121".into(),
                at: String::new(),
            };
            store
                .tx(|db| alerts::declare_status(db, &d, at))
                .expect("declare")
        };
        declare("140121000001", MineStatus::Stopped, "停产整顿通知", 1_000);
        declare("140121000002", MineStatus::Stopped, "停产整顿通知", 2_000);
        declare(
            "140121000001",
            MineStatus::Producing,
            "验收合格, 复产",
            3_000,
        );
        let standing = store.read(alerts::standing_declarations).unwrap();
        let got: Vec<(&str, MineStatus, &str)> = standing
            .iter()
            .map(|d| (d.mine.as_str(), d.status, d.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("140121000001", MineStatus::Producing, "验收合格, 复产"),
                ("140121000002", MineStatus::Stopped, "停产整顿通知"),
            ]
        );
        let history = store
            .read(|db| alerts::status_declarations(db, "140121000001", 10))
            .unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].status, MineStatus::Producing, "newest first");
        assert_eq!(history[1].at, "1970-01-01T00:00:01.000Z");
        assert_eq!(history[1].by, "county-140121");
    }

    #[test]
    fn a_failed_transaction_leaves_nothing() {
        let store = testing::store("store_rollback");
        let r: anyhow::Result<()> = store.tx(|db| {
            db.execute(
                "INSERT INTO roster (county, inspector, name, start_min, end_min, weekdays, source) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &["140421".into(), "zs".into(), "张三".into(), 0.into(), 1440.into(), "".into(), "api".into()],
            )?;
            anyhow::bail!("boom")
        });
        assert!(r.is_err());
        let n = store
            .read(|db| db.query("SELECT COUNT(*) FROM roster", &[]))
            .unwrap();
        assert_eq!(n[0][0], Val::Int(0));
    }

    #[test]
    fn values_round_trip() {
        let store = testing::store("store_values");
        store
            .tx(|db| {
                db.execute(
                    "INSERT INTO roster (county, inspector, name, start_min, end_min, weekdays, source) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &["140421".into(), "李四".into(), Val::Null, 480.into(), 1200.into(), "mon".into(), "api".into()],
                )
                .map(|_| ())
            })
            .unwrap_err();
        // name is NOT NULL: the insert above fails; a good one passes.
        store
            .tx(|db| {
                db.execute(
                    "INSERT INTO roster (county, inspector, name, start_min, end_min, weekdays, source) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &["140421".into(), "李四".into(), "李四".into(), 480.into(), 1200.into(), "mon".into(), "api".into()],
                )
                .map(|_| ())
            })
            .unwrap();
        let rows = store
            .read(|db| {
                db.query(
                    "SELECT inspector, start_min, end_min FROM roster WHERE county = $1",
                    &["140421".into()],
                )
            })
            .unwrap();
        assert_eq!(
            rows,
            vec![vec![
                Val::Text("李四".into()),
                Val::Int(480),
                Val::Int(1200)
            ]]
        );
    }
}
