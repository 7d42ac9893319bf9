//! Users, sessions and API tokens in the store (migration 2). Sessions and
//! tokens are kept only as the SHA-256 of the secret, so a copy of the
//! database lets nobody sign in; a session ends at a fixed time after
//! sign-in (`auth.session_ttl_secs`) or at sign-out; a token lasts until an
//! admin revokes it. A session or token acts only for a user of the running
//! config ([`Users`]), with the role and jurisdiction the config gives now;
//! a user removed from the config, or whose password hash changed, loses
//! their sessions and tokens when the config is loaded.

use serde::Serialize;

use super::{Caller, Users, Via, new_token, token_hash};
use crate::config::auth::UserConfig;
use crate::store::{Db, Store, Val};

/// A user as stored.
#[derive(Debug, Clone)]
pub struct StoredUser {
    /// Name.
    pub name: String,
    /// Role key.
    pub role: String,
    /// Division code, empty for none.
    pub jurisdiction: String,
    /// Argon2 PHC string, if the user may sign in with a password.
    pub password_hash: Option<String>,
}

/// Makes the store's `config` users exactly `users`: new ones added,
/// changed ones updated, ones no longer in the config removed with their
/// sessions and tokens; a user whose password hash changed loses their
/// sessions and tokens (a changed password ends what the old one opened).
/// Returns how many users the config has.
pub fn sync_config_users(
    store: &Store,
    users: &[UserConfig],
    now_ms: i64,
) -> anyhow::Result<usize> {
    store.tx(|db| {
        let existing = db.query("SELECT name FROM users WHERE source = 'config'", &[])?;
        for row in existing {
            let name = row[0].text().unwrap_or_default().to_string();
            if !users.iter().any(|u| u.name == name) {
                end_everything_of(db, &name, now_ms)?;
                db.execute("DELETE FROM users WHERE name = $1", &[name.into()])?;
            }
        }
        for u in users {
            let before = db.query(
                "SELECT password_hash FROM users WHERE name = $1",
                &[u.name.as_str().into()],
            )?;
            if let Some(row) = before.first()
                && row[0].text() != u.password_hash.as_deref()
            {
                end_everything_of(db, &u.name, now_ms)?;
            }
            let j = u.jurisdiction.clone().unwrap_or_default();
            let params: Vec<Val> = vec![
                u.name.as_str().into(),
                u.role.as_str().into(),
                j.into(),
                u.password_hash.clone().into(),
                now_ms.into(),
            ];
            let changed = db.execute(
                "UPDATE users SET role = $2, jurisdiction = $3, password_hash = $4, \
                 source = 'config', updated_ms = $5 WHERE name = $1",
                &params,
            )?;
            if changed == 0 {
                db.execute(
                    "INSERT INTO users (name, role, jurisdiction, password_hash, source, updated_ms) \
                     VALUES ($1, $2, $3, $4, 'config', $5)",
                    &params,
                )?;
            }
        }
        Ok(users.len())
    })
}

/// Ends every session of `name` and revokes their tokens.
fn end_everything_of(db: &mut dyn Db, name: &str, now_ms: i64) -> anyhow::Result<()> {
    db.execute("DELETE FROM sessions WHERE user_name = $1", &[name.into()])?;
    db.execute(
        "UPDATE api_tokens SET revoked_ms = $1 WHERE user_name = $2 AND revoked_ms IS NULL",
        &[now_ms.into(), name.into()],
    )?;
    Ok(())
}

fn user_from(r: &[Val]) -> StoredUser {
    StoredUser {
        name: r[0].text().unwrap_or_default().to_string(),
        role: r[1].text().unwrap_or_default().to_string(),
        jurisdiction: r[2].text().unwrap_or_default().to_string(),
        password_hash: r[3].text().map(str::to_string),
    }
}

/// A user by name.
pub fn user(db: &mut dyn Db, name: &str) -> anyhow::Result<Option<StoredUser>> {
    let rows = db.query(
        "SELECT name, role, jurisdiction, password_hash FROM users WHERE name = $1",
        &[name.into()],
    )?;
    Ok(rows.first().map(|r| user_from(r)))
}

/// A new session: its cookie token and CSRF token.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The cookie value (never stored).
    pub token: String,
    /// The CSRF token of the session.
    pub csrf: String,
    /// When it ends, ms.
    pub expires_ms: i64,
}

/// Opens a session for `user`.
pub fn create_session(
    db: &mut dyn Db,
    user: &str,
    client: &str,
    now_ms: i64,
    ttl_secs: u64,
) -> anyhow::Result<NewSession> {
    let token = new_token("mws_");
    let csrf = new_token("mwc_");
    let expires_ms = now_ms.saturating_add((ttl_secs as i64).saturating_mul(1000));
    // Expired sessions go as new ones come.
    db.execute(
        "DELETE FROM sessions WHERE expires_ms <= $1",
        &[now_ms.into()],
    )?;
    db.execute(
        "INSERT INTO sessions (token_hash, user_name, csrf, created_ms, expires_ms, client) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            token_hash(&token).into(),
            user.into(),
            csrf.as_str().into(),
            now_ms.into(),
            expires_ms.into(),
            client.into(),
        ],
    )?;
    Ok(NewSession {
        token,
        csrf,
        expires_ms,
    })
}

/// The caller behind a session cookie, if the session exists, has not
/// expired and is of a user of the running config.
pub fn session_caller(
    db: &mut dyn Db,
    token: &str,
    now_ms: i64,
    users: &Users,
) -> anyhow::Result<Option<Caller>> {
    let rows = db.query(
        "SELECT user_name, csrf FROM sessions WHERE token_hash = $1 AND expires_ms > $2",
        &[token_hash(token).into(), now_ms.into()],
    )?;
    Ok(rows.first().and_then(|r| {
        let csrf = r[1].text().unwrap_or_default().to_string();
        users.caller(r[0].text()?, Via::Session { csrf })
    }))
}

/// Ends a session.
pub fn end_session(db: &mut dyn Db, token: &str) -> anyhow::Result<bool> {
    Ok(db.execute(
        "DELETE FROM sessions WHERE token_hash = $1",
        &[token_hash(token).into()],
    )? > 0)
}

/// An API token as listed (never the secret).
#[derive(Debug, Clone, Serialize)]
pub struct TokenView {
    /// Id.
    pub id: i64,
    /// Whose token it is.
    pub user: String,
    /// What it is for.
    pub label: String,
    /// Created, RFC 3339.
    pub created_at: String,
    /// By whom.
    pub created_by: String,
    /// Last used, RFC 3339.
    pub last_used_at: Option<String>,
    /// Revoked, RFC 3339.
    pub revoked_at: Option<String>,
}

/// Creates an API token for an existing user; returns its id and the
/// secret (shown once).
pub fn create_token(
    db: &mut dyn Db,
    user_name: &str,
    label: &str,
    created_by: &str,
    now_ms: i64,
) -> anyhow::Result<(i64, String)> {
    anyhow::ensure!(
        user(db, user_name)?.is_some(),
        "no user {user_name:?}; list it under [[users]] first"
    );
    let token = new_token("mwt_");
    db.execute(
        "INSERT INTO api_tokens (token_hash, user_name, label, created_ms, created_by) \
         VALUES ($1, $2, $3, $4, $5)",
        &[
            token_hash(&token).into(),
            user_name.into(),
            label.into(),
            now_ms.into(),
            created_by.into(),
        ],
    )?;
    let rows = db.query(
        "SELECT id FROM api_tokens WHERE token_hash = $1",
        &[token_hash(&token).into()],
    )?;
    let id = rows.first().and_then(|r| r[0].int()).unwrap_or(0);
    Ok((id, token))
}

/// The caller behind an API token, if it exists, is not revoked and is of
/// a user of the running config (a token another config's `create-token`
/// made for a user this one does not define acts for nobody).
pub fn token_caller(
    db: &mut dyn Db,
    token: &str,
    now_ms: i64,
    users: &Users,
) -> anyhow::Result<Option<Caller>> {
    let rows = db.query(
        "SELECT user_name, id, last_used_ms FROM api_tokens \
         WHERE token_hash = $1 AND revoked_ms IS NULL",
        &[token_hash(token).into()],
    )?;
    let Some(r) = rows.first() else {
        return Ok(None);
    };
    let id = r[1].int().unwrap_or(0);
    let Some(caller) = r[0].text().and_then(|n| users.caller(n, Via::Token { id })) else {
        return Ok(None);
    };
    // Record use at most once a minute: a token is used on every request.
    if r[2].int().is_none_or(|t| now_ms - t > 60_000) {
        db.execute(
            "UPDATE api_tokens SET last_used_ms = $1 WHERE id = $2",
            &[now_ms.into(), id.into()],
        )?;
    }
    Ok(Some(caller))
}

/// Every token, newest first.
pub fn list_tokens(db: &mut dyn Db) -> anyhow::Result<Vec<TokenView>> {
    let rows = db.query(
        "SELECT id, user_name, label, created_ms, created_by, last_used_ms, revoked_ms \
         FROM api_tokens ORDER BY id DESC",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| TokenView {
            id: r[0].int().unwrap_or(0),
            user: r[1].text().unwrap_or_default().to_string(),
            label: r[2].text().unwrap_or_default().to_string(),
            created_at: crate::model::rfc3339(r[3].int().unwrap_or(0)),
            created_by: r[4].text().unwrap_or_default().to_string(),
            last_used_at: r[5].int().map(crate::model::rfc3339),
            revoked_at: r[6].int().map(crate::model::rfc3339),
        })
        .collect())
}

/// Revokes a token; false when there is no such live token.
pub fn revoke_token(db: &mut dyn Db, id: i64, now_ms: i64) -> anyhow::Result<bool> {
    Ok(db.execute(
        "UPDATE api_tokens SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL",
        &[now_ms.into(), id.into()],
    )? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use crate::store::testing;

    fn users() -> Vec<UserConfig> {
        vec![
            UserConfig {
                name: "county-140121".into(),
                role: "county_regulator".into(),
                jurisdiction: Some("140121".into()),
                password_hash: Some("$argon2id$v=19$m=8192,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into()),
            },
            UserConfig {
                name: "bot".into(),
                role: "admin".into(),
                jurisdiction: None,
                password_hash: None,
            },
        ]
    }

    #[test]
    fn a_session_lives_until_it_expires_or_ends() {
        let store = testing::store("auth_sessions");
        sync_config_users(&store, &users(), 0).unwrap();
        let all = Users::new(&users());
        let t0 = 1_000_000;
        let s = store
            .tx(|db| create_session(db, "county-140121", "127.0.0.1", t0, 60))
            .unwrap();
        assert_eq!(s.expires_ms, t0 + 60_000);
        let c = store
            .read(|db| session_caller(db, &s.token, t0 + 59_999, &all))
            .unwrap()
            .expect("live session");
        assert_eq!(c.name, "county-140121");
        assert_eq!(c.role, Role::CountyRegulator);
        assert_eq!(
            c.via,
            Via::Session {
                csrf: s.csrf.clone()
            }
        );
        assert!(c.scope.covers_county("140121"));
        // Expired at its end.
        assert!(
            store
                .read(|db| session_caller(db, &s.token, t0 + 60_000, &all))
                .unwrap()
                .is_none()
        );
        // Only the hash is stored.
        let stored = store
            .read(|db| db.query("SELECT token_hash FROM sessions", &[]))
            .unwrap();
        assert_ne!(stored[0][0], Val::Text(s.token.clone()));
        // Ended by sign-out.
        let s2 = store
            .tx(|db| create_session(db, "county-140121", "127.0.0.1", t0, 60))
            .unwrap();
        assert!(store.tx(|db| end_session(db, &s2.token)).unwrap());
        assert!(
            store
                .read(|db| session_caller(db, &s2.token, t0, &all))
                .unwrap()
                .is_none()
        );
        // A user removed from the config loses its sessions (in the store,
        // not only for the config that no longer names them).
        let s3 = store
            .tx(|db| create_session(db, "county-140121", "127.0.0.1", t0, 60))
            .unwrap();
        sync_config_users(&store, &users()[1..], 0).unwrap();
        assert!(
            store
                .read(|db| session_caller(db, &s3.token, t0, &all))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn tokens_work_until_revoked() {
        let store = testing::store("auth_tokens");
        sync_config_users(&store, &users(), 0).unwrap();
        let all = Users::new(&users());
        assert!(
            store
                .tx(|db| create_token(db, "nobody", "x", "admin", 0))
                .is_err()
        );
        let (id, token) = store
            .tx(|db| create_token(db, "bot", "ci", "admin", 0))
            .unwrap();
        let c = store
            .tx(|db| token_caller(db, &token, 5, &all))
            .unwrap()
            .expect("token");
        assert_eq!((c.name.as_str(), c.role), ("bot", Role::Admin));
        assert_eq!(c.via, Via::Token { id });
        assert!(
            store
                .tx(|db| token_caller(db, "mwt_wrong", 5, &all))
                .unwrap()
                .is_none()
        );
        let list = store.read(list_tokens).unwrap();
        assert_eq!(list[0].label, "ci");
        assert!(list[0].last_used_at.is_some());
        assert!(store.tx(|db| revoke_token(db, id, 9)).unwrap());
        assert!(
            store
                .tx(|db| token_caller(db, &token, 10, &all))
                .unwrap()
                .is_none()
        );
        assert!(!store.tx(|db| revoke_token(db, id, 9)).unwrap());
    }

    #[test]
    fn a_changed_password_hash_ends_sessions_and_tokens() {
        let store = testing::store("auth_rehash");
        let before = users();
        sync_config_users(&store, &before, 0).unwrap();
        let session = store
            .tx(|db| create_session(db, "county-140121", "127.0.0.1", 0, 3600))
            .unwrap();
        let (_, token) = store
            .tx(|db| create_token(db, "county-140121", "x", "admin", 0))
            .unwrap();
        let (_, bot) = store
            .tx(|db| create_token(db, "bot", "ci", "admin", 0))
            .unwrap();
        // Loaded again unchanged: everything stays.
        sync_config_users(&store, &before, 1).unwrap();
        let now = Users::new(&before);
        assert!(
            store
                .read(|db| session_caller(db, &session.token, 2, &now))
                .unwrap()
                .is_some()
        );
        // The hash changes: the old cookie and token are dead, the other
        // user's token lives.
        let mut after = before.clone();
        after[0].password_hash = Some("$argon2id$v=19$m=8192,t=1,p=1$bmV3c2FsdA$bmV3".into());
        sync_config_users(&store, &after, 3).unwrap();
        let now = Users::new(&after);
        assert!(
            store
                .read(|db| session_caller(db, &session.token, 4, &now))
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .tx(|db| token_caller(db, &token, 4, &now))
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .tx(|db| token_caller(db, &bot, 4, &now))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_token_acts_only_for_a_user_of_the_running_config() {
        // Another config's create-token wrote user "ghost" and a token for
        // them into the shared store; the running config has no ghost.
        let store = testing::store("auth_ghost");
        let mut other = users();
        other.push(UserConfig {
            name: "ghost".into(),
            role: "admin".into(),
            jurisdiction: None,
            password_hash: None,
        });
        sync_config_users(&store, &other, 0).unwrap();
        let (_, token) = store
            .tx(|db| create_token(db, "ghost", "x", "cli", 0))
            .unwrap();
        let running = Users::new(&users());
        assert!(
            store
                .tx(|db| token_caller(db, &token, 1, &running))
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .tx(|db| token_caller(db, &token, 1, &Users::new(&other)))
                .unwrap()
                .is_some()
        );
    }
}
