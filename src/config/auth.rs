//! `[auth]` and `[[users]]`: who may sign in, with which role and over which
//! jurisdiction, and how long a session lasts and how many bad passwords a
//! name or an address may try. Passwords are only ever written here as
//! argon2 PHC strings (`minewatch hash-password` makes one).

use serde::Deserialize;

use super::{Issue, Level};
use crate::auth::{Jurisdiction, Role};

/// Session and login settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// A session ends this long after sign-in, seconds.
    pub session_ttl_secs: u64,
    /// Mark the session cookie `Secure` (set it when the page is served
    /// over HTTPS, e.g. behind a TLS proxy).
    pub secure_cookie: bool,
    /// Failed sign-ins allowed per (user name, client address) within
    /// `login_window_secs`; the next from that address is refused with 429.
    /// Past as many failures of a name from all addresses together, each
    /// sign-in of the name waits first (see `login_max_delay_secs`).
    pub login_max_failures: u32,
    /// Failed sign-ins allowed per client address over all names within
    /// `login_window_secs`; the next is refused with 429.
    pub login_max_failures_per_address: u32,
    /// The window of the failure counts, seconds.
    pub login_window_secs: u64,
    /// The longest a sign-in of a name with many failures waits, seconds
    /// (it waits, doubling from 1 s, but is never refused for failures
    /// from other addresses).
    pub login_max_delay_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            session_ttl_secs: 12 * 3600,
            secure_cookie: false,
            login_max_failures: 5,
            login_max_failures_per_address: 50,
            login_window_secs: 15 * 60,
            login_max_delay_secs: 10,
        }
    }
}

/// One `[[users]]` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct UserConfig {
    /// Sign-in name (also the actor recorded on what the user does; an
    /// inspector's name is the `inspector` of their roster lines).
    pub name: String,
    /// `province_desk`, `city_regulator`, `county_regulator`, `inspector`,
    /// `auditor` or `admin`.
    pub role: String,
    /// The division code the user is bound to: a county for a county
    /// regulator or an inspector, a city for a city regulator; optional (a
    /// province code) for the province desk; none for auditor and admin.
    #[serde(default)]
    pub jurisdiction: Option<String>,
    /// Argon2 PHC string; none means the user cannot sign in with a
    /// password (a machine user with API tokens only).
    #[serde(default)]
    pub password_hash: Option<String>,
}

/// Checks `[auth]` and `[[users]]`.
pub fn validate(auth: &AuthConfig, users: &[UserConfig], out: &mut Vec<Issue>) {
    let mut err = |path: String, message: String, hint: &str| {
        out.push(Issue {
            level: Level::Error,
            path,
            message,
            hint: hint.into(),
        })
    };
    if auth.session_ttl_secs < 60 || auth.session_ttl_secs > 30 * 86_400 {
        err(
            "auth.session_ttl_secs".into(),
            format!("{} is out of range", auth.session_ttl_secs),
            "use 60..=2592000; 43200 (12 h, one shift) is usual",
        );
    }
    if auth.login_max_failures == 0 {
        err(
            "auth.login_max_failures".into(),
            "must be at least 1".into(),
            "5 is usual",
        );
    }
    if auth.login_max_failures_per_address < auth.login_max_failures {
        err(
            "auth.login_max_failures_per_address".into(),
            format!(
                "{} is below login_max_failures ({})",
                auth.login_max_failures_per_address, auth.login_max_failures
            ),
            "50 is usual: an address may mistype several names",
        );
    }
    if auth.login_max_delay_secs > 60 {
        err(
            "auth.login_max_delay_secs".into(),
            format!("{} is out of range", auth.login_max_delay_secs),
            "use 0..=60; 10 is usual",
        );
    }
    if auth.login_window_secs == 0 || auth.login_window_secs > 86_400 {
        err(
            "auth.login_window_secs".into(),
            format!("{} is out of range", auth.login_window_secs),
            "use 1..=86400; 900 (15 min) is usual",
        );
    }
    let mut seen = std::collections::HashSet::new();
    let mut weak = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let p = format!("users[{i}]");
        if u.name.trim().is_empty()
            || u.name.len() > 64
            || u.name.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            err(
                format!("{p}.name"),
                format!("{:?} is not a usable sign-in name", u.name),
                "use 1 to 64 characters without spaces, e.g. \"county-140121\"",
            );
        } else if !seen.insert(u.name.as_str()) {
            err(
                format!("{p}.name"),
                format!("user {} is listed twice", u.name),
                "names must be unique",
            );
        }
        let Some(role) = Role::parse(&u.role) else {
            err(
                format!("{p}.role"),
                format!("unknown role {:?}", u.role),
                "use province_desk, city_regulator, county_regulator, inspector, auditor or admin",
            );
            continue;
        };
        if let Err(m) = Jurisdiction::for_role(role, u.jurisdiction.as_deref()) {
            err(
                format!("{p}.jurisdiction"),
                m,
                "a county regulator or inspector needs a county code (140121), a city regulator \
                 a city code (140100); auditor and admin take none",
            );
        }
        if let Some(h) = &u.password_hash {
            if let Err(e) = crate::auth::check_phc(h) {
                err(
                    format!("{p}.password_hash"),
                    format!("not an argon2 PHC string: {e}"),
                    "make one with `minewatch hash-password` (reads the password from stdin); \
                     never write a plain password here",
                );
            } else if let Some((m, t, par)) = crate::auth::phc_params(h)
                && !crate::auth::params_strong_enough((m, t, par))
            {
                weak.push(Issue {
                    level: Level::Warning,
                    path: format!("{p}.password_hash"),
                    message: format!(
                        "argon2 parameters m={m} KiB, t={t}, p={par} are below OWASP's minimum \
                         for argon2id (m=19456, t=2 or m=47104, t=1)"
                    ),
                    hint: "hash the password again with `minewatch hash-password`".into(),
                });
            }
        }
    }
    out.extend(weak);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, role: &str, j: Option<&str>) -> UserConfig {
        UserConfig {
            name: name.into(),
            role: role.into(),
            jurisdiction: j.map(str::to_string),
            password_hash: None,
        }
    }

    #[test]
    fn users_are_checked_with_their_paths() {
        let mut out = Vec::new();
        let mut plain = user("c", "county_regulator", Some("140121"));
        plain.password_hash = Some("hunter2".into());
        validate(
            &AuthConfig::default(),
            &[
                user("desk", "province_desk", None),
                user("a", "county_regulator", Some("140100")),
                user("b", "boss", None),
                plain,
                user("desk", "auditor", None),
                user("i", "inspector", Some("140121")),
            ],
            &mut out,
        );
        let paths: Vec<&str> = out.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "users[1].jurisdiction",
                "users[2].role",
                "users[3].password_hash",
                "users[4].name"
            ]
        );
    }

    #[test]
    fn weak_argon2_parameters_are_warned_about() {
        let mut weak = user("w", "auditor", None);
        weak.password_hash = Some(crate::auth::hash_password_cheap("long enough pw").unwrap());
        let mut strong = user("s", "auditor", None);
        strong.password_hash = Some(
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$\
             8DZ3rY8HqR3sFHZ7v7Aw8fMzbDPNdn2Z0HkGwE2GcvU"
                .into(),
        );
        let mut out = Vec::new();
        validate(&AuthConfig::default(), &[weak, strong], &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].level, Level::Warning);
        assert_eq!(out[0].path, "users[0].password_hash");
        assert!(out[0].message.contains("m=8192"), "{}", out[0].message);
    }
}
