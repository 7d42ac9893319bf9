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
    /// Data the DDL alone cannot carry over, run after it in the same
    /// transaction.
    then: Option<fn(&mut dyn Db) -> anyhow::Result<()>>,
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
        then: None,
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
        then: None,
    },
    Migration {
        version: 3,
        what: "alert reason column; transitions get a store-wide id (the archive's export cursor) \
               and the alert's peak, end and level as of each transition",
        sql: "
ALTER TABLE alerts ADD COLUMN reason TEXT;
CREATE INDEX alerts_by_reason ON alerts (reason, raised_ms);
CREATE TABLE alert_transitions_v3 (
    id {serial},
    alert_id TEXT NOT NULL REFERENCES alerts (id),
    seq BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    transition TEXT NOT NULL,
    actor TEXT NOT NULL,
    detail TEXT NOT NULL,
    peak DOUBLE PRECISION,
    cleared_ms BIGINT,
    level TEXT,
    UNIQUE (alert_id, seq)
);
INSERT INTO alert_transitions_v3 (alert_id, seq, at_ms, transition, actor, detail)
    SELECT alert_id, seq, at_ms, transition, actor, detail FROM alert_transitions
    ORDER BY at_ms, alert_id, seq;
DROP TABLE alert_transitions;
ALTER TABLE alert_transitions_v3 RENAME TO alert_transitions;
",
        then: Some(backfill_reasons),
    },
    Migration {
        version: 4,
        what: "declared mine status (停产 orders and their lifting), one row per declaration",
        sql: "
CREATE TABLE mine_status (
    id {serial},
    mine TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX mine_status_by_mine ON mine_status (mine, id);
",
        then: None,
    },
];

/// Migration 3: the reason of data-anomaly and falsification alerts stored
/// before it had a column of its own is the key that leads their `rule`
/// text (`flat_line: …`).
fn backfill_reasons(db: &mut dyn Db) -> anyhow::Result<()> {
    let rows = db.query(
        "SELECT id, body FROM alerts WHERE kind IN ('data_anomaly', 'falsification_suspect') \
         AND reason IS NULL",
        &[],
    )?;
    for r in rows {
        let (Some(id), Some(body)) = (r[0].text(), r[1].text()) else {
            continue;
        };
        let rule = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|b| b["rule"].as_str().map(str::to_string))
            .unwrap_or_default();
        let Some(flag) = rule.split(':').next().and_then(crate::model::Flag::parse) else {
            continue;
        };
        db.execute(
            "UPDATE alerts SET reason = $1 WHERE id = $2",
            &[flag.key().into(), id.into()],
        )?;
    }
    Ok(())
}

/// Brings the schema up to date; returns the version it is at.
pub fn apply(db: &mut dyn Db, now_ms: i64) -> anyhow::Result<i64> {
    apply_up_to(db, now_ms, i64::MAX)
}

/// Applies the migrations up to `version` (tests start from old schemas
/// this way); returns the version the schema is at.
pub fn apply_up_to(db: &mut dyn Db, now_ms: i64, version: i64) -> anyhow::Result<i64> {
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
    let mut at = current;
    for m in MIGRATIONS
        .iter()
        .filter(|m| m.version > current && m.version <= version)
    {
        let context =
            |e: anyhow::Error| e.context(format!("store migration {} ({})", m.version, m.what));
        db.batch(&m.sql.replace("{serial}", serial))
            .map_err(context)?;
        if let Some(then) = m.then {
            then(db).map_err(context)?;
        }
        db.execute(
            "INSERT INTO schema_migrations (version, applied_ms, what) VALUES ($1, $2, $3)",
            &[m.version.into(), now_ms.into(), m.what.into()],
        )?;
        tracing::info!(version = m.version, what = m.what, "store migrated");
        at = m.version;
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Val, testing};

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

    /// Writes an alert and its transitions as minewatch wrote them at
    /// schema version 2 (no reason column, transitions keyed by alert and
    /// sequence only).
    fn v2_alert(db: &mut dyn Db, id: &str, kind: &str, rule: &str, raised: i64, seqs: &[&str]) {
        let body = serde_json::json!({
            "id": id, "kind": kind, "severity": "minor", "mine": "140421000001",
            "mine_name": "一号矿", "county": "140421", "city": "140400", "province": "140000",
            "point": "p1", "sensor": "0001", "location": null, "unit": "%", "value": 0.5,
            "peak": 0.5, "threshold": null, "rule": rule,
            "started_at": crate::model::rfc3339(raised), "resolved_at": null, "last_seen": null,
        });
        db.execute(
            "INSERT INTO alerts (id, kind, severity, mine, county, city, province, point, \
             condition, handling, level, planned, started_ms, raised_ms, cleared_ms, \
             last_notified_ms, level_since_ms, peak, seq, body) VALUES ($1, $2, 'minor', \
             '140421000001', '140421', '140400', '140000', 'p1', 'active', 'unacknowledged', \
             'city', 0, $3, $3, NULL, $3, $3, 0.75, $4, $5)",
            &[
                id.into(),
                kind.into(),
                raised.into(),
                (seqs.len() as i64).into(),
                body.to_string().into(),
            ],
        )
        .unwrap();
        for (i, t) in seqs.iter().enumerate() {
            db.execute(
                "INSERT INTO alert_transitions (alert_id, seq, at_ms, transition, actor, detail) \
                 VALUES ($1, $2, $3, $4, 'system', '{}')",
                &[
                    id.into(),
                    (i as i64 + 1).into(),
                    (raised + i as i64 * 1000).into(),
                    (*t).into(),
                ],
            )
            .unwrap();
        }
    }

    #[test]
    fn migration_3_numbers_old_transitions_in_time_order_and_backfills_reasons() {
        let store = testing::store_at("migration_3", 2);
        store
            .tx(|db| {
                // The later alert is written first: ids follow time, not
                // insertion.
                v2_alert(
                    db,
                    "b",
                    "overlimit",
                    "回风巷 ≥1.0% 报警",
                    2_000,
                    &["raised"],
                );
                v2_alert(
                    db,
                    "a",
                    "data_anomaly",
                    "flat_line: 数据长时间不变 (直线)",
                    1_000,
                    &["raised", "task_created"],
                );
                v2_alert(
                    db,
                    "c",
                    "falsification_suspect",
                    "no reason here",
                    5_000,
                    &[],
                );
                Ok(())
            })
            .unwrap();
        assert_eq!(
            store.tx(|db| apply(db, 7)).unwrap(),
            MIGRATIONS.len() as i64
        );
        let rows = store
            .read(|db| {
                db.query(
                    "SELECT id, alert_id, seq, peak, cleared_ms, level FROM alert_transitions \
                     ORDER BY id",
                    &[],
                )
            })
            .unwrap();
        let order: Vec<(i64, String, i64)> = rows
            .iter()
            .map(|r| {
                (
                    r[0].int().unwrap(),
                    r[1].text().unwrap().to_string(),
                    r[2].int().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            order,
            [(1, "a".into(), 1), (2, "a".into(), 2), (3, "b".into(), 1)]
        );
        // Old transitions carry no snapshot of their own …
        assert!(rows.iter().all(|r| r[3] == Val::Null && r[5] == Val::Null));
        // … so the export takes the alert's current peak and level.
        let exported = store
            .read(|db| crate::store::alerts::transitions_after(db, 0, 10))
            .unwrap();
        assert_eq!(exported.len(), 3);
        assert_eq!(
            (exported[0].peak, exported[0].level.as_str()),
            (Some(0.75), "city")
        );
        assert_eq!(exported[0].reason.as_deref(), Some("flat_line"));
        assert_eq!(exported[2].reason, None);
        let reasons = store
            .read(|db| db.query("SELECT id, reason FROM alerts ORDER BY id", &[]))
            .unwrap();
        assert_eq!(
            reasons,
            vec![
                vec![Val::Text("a".into()), Val::Text("flat_line".into())],
                vec![Val::Text("b".into()), Val::Null],
                vec![Val::Text("c".into()), Val::Null],
            ]
        );
        // The stored body has no reason field; reading the alert gives the
        // column's.
        let a = store
            .read(|db| crate::store::alerts::get_alert(db, "a"))
            .unwrap()
            .unwrap();
        assert_eq!(a.alert.reason.as_deref(), Some("flat_line"));
        // A transition recorded now gets the next id and its snapshot.
        let seq = store
            .tx(|db| {
                crate::store::alerts::add_transition(
                    db,
                    "b",
                    &crate::store::NewTransition {
                        at_ms: 9_000,
                        transition: "acknowledged",
                        actor: "x",
                        detail: serde_json::json!({}),
                    },
                )
            })
            .unwrap();
        assert_eq!(seq, 2);
        let last = store
            .read(|db| crate::store::alerts::transitions_after(db, 3, 10))
            .unwrap();
        assert_eq!(last.len(), 1);
        assert_eq!((last[0].id, last[0].seq), (4, 2));
        assert_eq!((last[0].peak, last[0].level.as_str()), (Some(0.75), "city"));
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
