//! Users, sessions and API tokens in the store (migration 2). Sessions and
//! tokens are kept only as the SHA-256 of the secret, so a copy of the
//! database lets nobody sign in; a session ends at a fixed time after
//! sign-in (`auth.session_ttl_secs`) or at sign-out; a token lasts until an
//! admin revokes it. Each lookup joins the user, so a role or jurisdiction
//! changed in the config applies at the next request.

use serde::Serialize;

use super::{Caller, Jurisdiction, Role, Via, new_token, token_hash};
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
/// sessions and tokens. Returns how many users the config has.
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
                db.execute("DELETE FROM sessions WHERE user_name = $1", &[name.as_str().into()])?;
                db.execute(
                    "UPDATE api_tokens SET revoked_ms = $1 WHERE user_name = $2 AND revoked_ms IS NULL",
                    &[now_ms.into(), name.as_str().into()],
                )?;
                db.execute("DELETE FROM users WHERE name = $1", &[name.into()])?;
            }
        }
        for u in users {
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

/// The caller a stored user is, if their role and jurisdiction still make
/// sense (a user with a broken row is refused, not widened).
fn caller_of(u: &StoredUser, via: Via) -> Option<Caller> {
    let role = Role::parse(&u.role)?;
    let scope = Jurisdiction::for_role(role, Some(&u.jurisdiction)).ok()?;
    Some(Caller {
        name: u.name.clone(),
        role,
        scope,
        via,
    })
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

/// The caller behind a session cookie, if the session exists and has not
/// expired.
pub fn session_caller(db: &mut dyn Db, token: &str, now_ms: i64) -> anyhow::Result<Option<Caller>> {
    let rows = db.query(
        "SELECT u.name, u.role, u.jurisdiction, u.password_hash, s.csrf FROM sessions s \
         JOIN users u ON u.name = s.user_name WHERE s.token_hash = $1 AND s.expires_ms > $2",
        &[token_hash(token).into(), now_ms.into()],
    )?;
    Ok(rows.first().and_then(|r| {
        let csrf = r[4].text().unwrap_or_default().to_string();
        caller_of(&user_from(r), Via::Session { csrf })
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

/// The caller behind an API token, if it exists and is not revoked.
pub fn token_caller(db: &mut dyn Db, token: &str, now_ms: i64) -> anyhow::Result<Option<Caller>> {
    let rows = db.query(
        "SELECT u.name, u.role, u.jurisdiction, u.password_hash, t.id, t.last_used_ms \
         FROM api_tokens t JOIN users u ON u.name = t.user_name \
         WHERE t.token_hash = $1 AND t.revoked_ms IS NULL",
        &[token_hash(token).into()],
    )?;
    let Some(r) = rows.first() else {
        return Ok(None);
    };
    let id = r[4].int().unwrap_or(0);
    // Record use at most once a minute: a token is used on every request.
    if r[5].int().is_none_or(|t| now_ms - t > 60_000) {
        db.execute(
            "UPDATE api_tokens SET last_used_ms = $1 WHERE id = $2",
            &[now_ms.into(), id.into()],
        )?;
    }
    Ok(caller_of(&user_from(r), Via::Token { id }))
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
        let t0 = 1_000_000;
        let s = store
            .tx(|db| create_session(db, "county-140121", "127.0.0.1", t0, 60))
            .unwrap();
        assert_eq!(s.expires_ms, t0 + 60_000);
        let c = store
            .read(|db| session_caller(db, &s.token, t0 + 59_999))
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
                .read(|db| session_caller(db, &s.token, t0 + 60_000))
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
                .read(|db| session_caller(db, &s2.token, t0))
                .unwrap()
                .is_none()
        );
        // A user removed from the config loses its sessions.
        let s3 = store
            .tx(|db| create_session(db, "county-140121", "127.0.0.1", t0, 60))
            .unwrap();
        sync_config_users(&store, &users()[1..], 0).unwrap();
        assert!(
            store
                .read(|db| session_caller(db, &s3.token, t0))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn tokens_work_until_revoked() {
        let store = testing::store("auth_tokens");
        sync_config_users(&store, &users(), 0).unwrap();
        assert!(
            store
                .tx(|db| create_token(db, "nobody", "x", "admin", 0))
                .is_err()
        );
        let (id, token) = store
            .tx(|db| create_token(db, "bot", "ci", "admin", 0))
            .unwrap();
        let c = store
            .tx(|db| token_caller(db, &token, 5))
            .unwrap()
            .expect("token");
        assert_eq!((c.name.as_str(), c.role), ("bot", Role::Admin));
        assert_eq!(c.via, Via::Token { id });
        assert!(
            store
                .tx(|db| token_caller(db, "mwt_wrong", 5))
                .unwrap()
                .is_none()
        );
        let list = store.read(list_tokens).unwrap();
        assert_eq!(list[0].label, "ci");
        assert!(list[0].last_used_at.is_some());
        assert!(store.tx(|db| revoke_token(db, id, 9)).unwrap());
        assert!(
            store
                .tx(|db| token_caller(db, &token, 10))
                .unwrap()
                .is_none()
        );
        assert!(!store.tx(|db| revoke_token(db, id, 9)).unwrap());
    }
}
