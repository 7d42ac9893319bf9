//! Numbered schema migrations. Each runs once, in order, inside the opening
//! transaction, and is recorded in `schema_migrations`; a database newer than
//! this binary is refused rather than misread. Add a migration at the end;
//! never edit one that has shipped.

use super::{Db, Dialect};

/// One schema change.
struct Migration {
    version: i64,
    /// What it does, for the log.
    what: &'static str,
    /// DDL; `{serial}` becomes the dialect's auto-increment key.
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        what: "alerts, transitions, outbox, tasks, roster, calibration windows",
        sql: "
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    mine TEXT NOT NULL,
    county TEXT NOT NULL,
    city TEXT NOT NULL,
    province TEXT NOT NULL,
    point TEXT,
    condition TEXT NOT NULL,
    handling TEXT NOT NULL,
    level TEXT NOT NULL,
    planned BIGINT NOT NULL,
    started_ms BIGINT NOT NULL,
    raised_ms BIGINT NOT NULL,
    cleared_ms BIGINT,
    last_notified_ms BIGINT NOT NULL,
    level_since_ms BIGINT NOT NULL,
    peak DOUBLE PRECISION,
    seq BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX alerts_by_state ON alerts (condition, handling);
CREATE INDEX alerts_by_county ON alerts (county, raised_ms);
CREATE INDEX alerts_by_mine ON alerts (mine, raised_ms);
CREATE TABLE alert_transitions (
    alert_id TEXT NOT NULL REFERENCES alerts (id),
    seq BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    transition TEXT NOT NULL,
    actor TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (alert_id, seq)
);
CREATE TABLE outbox (
    id {serial},
    key TEXT NOT NULL UNIQUE,
    alert_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    mine TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    next_ms BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    state TEXT NOT NULL,
    batch_key TEXT,
    delivered_ms BIGINT,
    last_error TEXT,
    payload TEXT NOT NULL
);
CREATE INDEX outbox_due ON outbox (state, next_ms);
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL UNIQUE REFERENCES alerts (id),
    county TEXT NOT NULL,
    mine TEXT NOT NULL,
    state TEXT NOT NULL,
    assignee TEXT,
    created_ms BIGINT NOT NULL,
    due_ms BIGINT NOT NULL,
    overdue BIGINT NOT NULL,
    acknowledged_ms BIGINT,
    closed_ms BIGINT,
    feedback TEXT,
    title TEXT NOT NULL
);
CREATE INDEX tasks_by_state ON tasks (state, due_ms);
CREATE INDEX tasks_by_county ON tasks (county, created_ms);
CREATE TABLE roster (
    id {serial},
    county TEXT NOT NULL,
    inspector TEXT NOT NULL,
    name TEXT NOT NULL,
    start_min BIGINT NOT NULL,
    end_min BIGINT NOT NULL,
    weekdays TEXT NOT NULL,
    source TEXT NOT NULL
);
CREATE TABLE calibrations (
    id {serial},
    mine TEXT NOT NULL,
    point TEXT,
    from_ms BIGINT NOT NULL,
    to_ms BIGINT NOT NULL,
    note TEXT NOT NULL,
    actor TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX calibrations_by_mine ON calibrations (mine, from_ms);
",
    },
    Migration {
        version: 2,
        what: "users, sessions and API tokens (secrets kept as SHA-256 only)",
        sql: "
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    jurisdiction TEXT NOT NULL,
    password_hash TEXT,
    source TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    client TEXT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_name);
CREATE INDEX sessions_by_expiry ON sessions (expires_ms);
CREATE TABLE api_tokens (
    id {serial},
    token_hash TEXT NOT NULL UNIQUE,
    user_name TEXT NOT NULL,
    label TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    last_used_ms BIGINT,
    revoked_ms BIGINT
);
",
    },
];

/// Brings the schema up to date; returns the version it is at.
pub fn apply(db: &mut dyn Db, now_ms: i64) -> anyhow::Result<i64> {
    db.batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, \
         applied_ms BIGINT NOT NULL, what TEXT NOT NULL)",
    )?;
    let rows = db.query("SELECT MAX(version) FROM schema_migrations", &[])?;
    let current = rows.first().and_then(|r| r[0].int()).unwrap_or(0);
    let newest = MIGRATIONS.last().map_or(0, |m| m.version);
    anyhow::ensure!(
        current <= newest,
        "the store is at schema version {current}, newer than this minewatch knows ({newest}); \
         run the newer minewatch or point alerting.store elsewhere"
    );
    let serial = match db.dialect() {
        Dialect::Sqlite => "INTEGER PRIMARY KEY",
        Dialect::Postgres => "BIGSERIAL PRIMARY KEY",
    };
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        db.batch(&m.sql.replace("{serial}", serial))
            .map_err(|e| e.context(format!("store migration {} ({})", m.version, m.what)))?;
        db.execute(
            "INSERT INTO schema_migrations (version, applied_ms, what) VALUES ($1, $2, $3)",
            &[m.version.into(), now_ms.into(), m.what.into()],
        )?;
        tracing::info!(version = m.version, what = m.what, "store migrated");
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

    #[test]
    fn migrations_run_once() {
        let store = testing::store("migrations_once");
        // Opening applied them; applying again changes nothing.
        let v = store.tx(|db| apply(db, 1)).unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        let n = store
            .read(|db| db.query("SELECT COUNT(*) FROM schema_migrations", &[]))
            .unwrap();
        assert_eq!(n[0][0].int(), Some(MIGRATIONS.len() as i64));
    }

    #[test]
    fn a_newer_database_is_refused() {
        let store = testing::store("migrations_newer");
        store
            .tx(|db| {
                db.execute(
                    "INSERT INTO schema_migrations (version, applied_ms, what) VALUES ($1, $2, $3)",
                    &[999.into(), 0.into(), "future".into()],
                )
            })
            .unwrap();
        let err = store.tx(|db| apply(db, 1)).unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
    }
}
