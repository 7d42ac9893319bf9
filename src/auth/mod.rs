//! Who is asking, and what they may see and do.
//!
//! Users have a [`Role`] and, except the province desk, auditors and
//! admins, a [`Jurisdiction`]: a county regulator and a duty inspector see
//! only the mines of their county, a city regulator those of its city.
//! Passwords are argon2 PHC strings; sessions and API tokens are random
//! 256-bit tokens of which the store keeps only a SHA-256 hash
//! ([`sessions`]). Failed sign-ins are counted per name and per client
//! address ([`limit`]).
//!
//! CSRF: the synchronizer-token pattern. Each session has its own random
//! CSRF token (given by `GET /api/me` and in the login answer); a
//! state-changing request (`POST`, `PUT`, `PATCH`, `DELETE`) that
//! authenticates with the session cookie must carry it in the
//! `X-CSRF-Token` header or, for a form, the `csrf` field. Requests with an
//! API token (`Authorization: Bearer …`) carry no cookie and need none.

pub mod limit;
pub mod sessions;

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, Params};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// What a user is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The provincial online patrol desk (省级网上巡查专班): sees everything,
    /// handles alerts.
    ProvinceDesk,
    /// A city's regulator: its city's mines; handles their alerts and tasks.
    CityRegulator,
    /// A county's regulator: its county's mines; handles their alerts and
    /// tasks.
    CountyRegulator,
    /// A duty inspector (值班巡查员) of a county: sees the county, acts on
    /// the tasks given to them.
    Inspector,
    /// Audit and law enforcement: sees everything, changes nothing.
    Auditor,
    /// Everything, including API tokens.
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 6] = [
        Role::ProvinceDesk,
        Role::CityRegulator,
        Role::CountyRegulator,
        Role::Inspector,
        Role::Auditor,
        Role::Admin,
    ];

    /// The config and API name.
    pub fn key(self) -> &'static str {
        match self {
            Role::ProvinceDesk => "province_desk",
            Role::CityRegulator => "city_regulator",
            Role::CountyRegulator => "county_regulator",
            Role::Inspector => "inspector",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    /// Parses a config or store name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.key() == s)
    }

    /// Acknowledge, dispose and close alerts (in scope).
    pub fn handles_alerts(self) -> bool {
        matches!(
            self,
            Role::ProvinceDesk | Role::CityRegulator | Role::CountyRegulator | Role::Admin
        )
    }

    /// Act on any task in scope (an inspector acts only on their own).
    pub fn handles_any_task(self) -> bool {
        matches!(
            self,
            Role::CityRegulator | Role::CountyRegulator | Role::Admin
        )
    }

    /// Change the roster and calibration windows (in scope).
    pub fn writes_roster(self) -> bool {
        matches!(
            self,
            Role::CityRegulator | Role::CountyRegulator | Role::Admin
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// The level of a division code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// `XX0000`.
    Province,
    /// `XXYY00`.
    City,
    /// `XXYYZZ`.
    County,
}

impl Level {
    /// `province`, `city` or `county`.
    pub fn name(self) -> &'static str {
        match self {
            Level::Province => "province",
            Level::City => "city",
            Level::County => "county",
        }
    }
}

/// A 6-digit GB/T 2260 division code and its level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Jurisdiction {
    /// The code.
    pub code: String,
    /// Its level, from its trailing zeros.
    pub level: Level,
}

impl Jurisdiction {
    /// Parses a 6-digit code.
    pub fn parse(code: &str) -> Option<Jurisdiction> {
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) || code.starts_with("00") {
            return None;
        }
        let level = if code.ends_with("0000") {
            Level::Province
        } else if code.ends_with("00") {
            Level::City
        } else {
            Level::County
        };
        Some(Jurisdiction {
            code: code.to_string(),
            level,
        })
    }

    /// The scope a user of `role` bound to `code` has, or why the code does
    /// not fit the role.
    pub fn for_role(role: Role, code: Option<&str>) -> Result<Scope, String> {
        let want = match role {
            Role::Auditor | Role::Admin => {
                return match code.filter(|c| !c.is_empty()) {
                    None => Ok(Scope::All),
                    Some(c) => Err(format!(
                        "role {role} sees every mine; remove jurisdiction {c:?}"
                    )),
                };
            }
            Role::ProvinceDesk => {
                if code.is_none_or(str::is_empty) {
                    return Ok(Scope::All);
                }
                Level::Province
            }
            Role::CityRegulator => Level::City,
            Role::CountyRegulator | Role::Inspector => Level::County,
        };
        let Some(c) = code.filter(|c| !c.is_empty()) else {
            return Err(format!("role {role} needs a jurisdiction"));
        };
        match Jurisdiction::parse(c) {
            Some(j) if j.level == want => Ok(Scope::Within(j)),
            Some(j) => Err(format!(
                "{c:?} is a {} code; role {role} needs a {} code",
                j.level.name(),
                want.name()
            )),
            None => Err(format!("{c:?} is not a 6-digit division code")),
        }
    }

    /// True when `other` lies within this jurisdiction (or is it).
    fn contains(&self, other: &Jurisdiction) -> bool {
        let prefix = |n: usize| other.code.get(..n) == self.code.get(..n);
        match self.level {
            Level::Province => prefix(2),
            Level::City => other.level != Level::Province && prefix(4),
            Level::County => other.level == Level::County && prefix(6),
        }
    }
}

/// What part of the province a caller sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every mine.
    All,
    /// The mines in one jurisdiction.
    Within(Jurisdiction),
}

impl Scope {
    /// True when a mine with these codes is in scope.
    pub fn covers(&self, province: &str, city: &str, county: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Within(j) => match j.level {
                Level::Province => province == j.code,
                Level::City => city == j.code,
                Level::County => county == j.code,
            },
        }
    }

    /// True when an alert is in scope.
    pub fn covers_alert(&self, a: &crate::model::Alert) -> bool {
        self.covers(&a.province, &a.city, &a.county)
    }

    /// True when a county (by its code alone) is in scope.
    pub fn covers_county(&self, county: &str) -> bool {
        match (self, Jurisdiction::parse(county)) {
            (Scope::All, _) => true,
            (Scope::Within(j), Some(c)) => j.contains(&c),
            (Scope::Within(_), None) => false,
        }
    }

    /// The code to restrict store queries to, none for everything.
    pub fn code(&self) -> Option<&str> {
        match self {
            Scope::All => None,
            Scope::Within(j) => Some(&j.code),
        }
    }

    /// The jurisdiction to count over when `requested` is asked for:
    /// `Some(code)` (empty = everything) when it overlaps the scope, none
    /// when it lies outside.
    pub fn narrow(&self, requested: &str) -> Option<String> {
        match self {
            Scope::All => Some(requested.to_string()),
            Scope::Within(mine) => {
                if requested.is_empty() {
                    return Some(mine.code.clone());
                }
                let r = Jurisdiction::parse(requested)?;
                if mine.contains(&r) {
                    Some(r.code)
                } else if r.contains(mine) {
                    Some(mine.code.clone())
                } else {
                    None
                }
            }
        }
    }
}

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// The session cookie; state changes need this CSRF token.
    Session {
        /// The session's CSRF token.
        csrf: String,
    },
    /// An API token (`Authorization: Bearer …`).
    Token {
        /// The token's id.
        id: i64,
    },
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// User name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// What they see.
    pub scope: Scope,
    /// Session or API token.
    pub via: Via,
}

impl Caller {
    /// The actor recorded on a change: the user's name; an API token (a
    /// machine acting for people) may name the person in the body's `by`.
    pub fn actor(&self, by: &str) -> String {
        match self.via {
            Via::Token { .. } if !by.trim().is_empty() => by.trim().to_string(),
            _ => self.name.clone(),
        }
    }
}

/// Argon2id with the crate's defaults (19 MiB, 2 passes): OWASP's minimum.
fn argon2() -> Argon2<'static> {
    Argon2::default()
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    hash_with(argon2(), password)
}

/// Hashes with cheap parameters (8 MiB, 1 pass), for tests and the demo,
/// where a sign-in must not take long on a debug build.
pub fn hash_password_cheap(password: &str) -> anyhow::Result<String> {
    let params = Params::new(8 * 1024, 1, 1, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    hash_with(
        Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params),
        password,
    )
}

fn hash_with(a: Argon2<'_>, password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    a.hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

/// Checks that `phc` is an argon2 PHC string this build can verify.
pub fn check_phc(phc: &str) -> Result<(), String> {
    let h = PasswordHash::new(phc).map_err(|e| e.to_string())?;
    if !h.algorithm.as_str().starts_with("argon2") {
        return Err(format!("algorithm {} is not argon2", h.algorithm));
    }
    if h.hash.is_none() {
        return Err("no hash part".into());
    }
    Params::try_from(&h).map_err(|e| e.to_string())?;
    Ok(())
}

/// True when `password` matches the PHC string `phc` (false for a malformed
/// string). Takes tens of milliseconds by design: call off the async
/// workers.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => argon2().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// The argon2 parameters of a PHC string, `(m KiB, t, p)`.
pub fn phc_params(phc: &str) -> Option<(u32, u32, u32)> {
    let h = PasswordHash::new(phc).ok()?;
    let p = Params::try_from(&h).ok()?;
    Some((p.m_cost(), p.t_cost(), p.p_cost()))
}

/// True when argon2 parameters meet OWASP's minimum for argon2id: 19 MiB
/// with 2 passes, or 46 MiB with one (more memory or passes is fine).
pub fn params_strong_enough((m, t, _p): (u32, u32, u32)) -> bool {
    (m >= 19 * 1024 && t >= 2) || (m >= 46 * 1024 && t >= 1)
}

/// The shortest password `hash-password` accepts, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// The users the running config defines — the only ones a session or an
/// API token acts for, whatever else the store holds (another config's
/// `create-token` may have written more). Built once at start.
pub struct Users {
    by_name: std::collections::HashMap<String, crate::config::auth::UserConfig>,
    /// A PHC string of no one's password, with the parameters of the
    /// configured users' hashes: checked for a name that does not exist
    /// (or has no password), so that it takes as long as a real one.
    dummy: Option<String>,
}

impl Users {
    /// The users of the config.
    pub fn new(users: &[crate::config::auth::UserConfig]) -> Users {
        let params = users
            .iter()
            .filter_map(|u| u.password_hash.as_deref())
            .find_map(|phc| {
                let h = PasswordHash::new(phc).ok()?;
                let alg = argon2::Algorithm::try_from(h.algorithm).ok()?;
                let version = h
                    .version
                    .and_then(|v| argon2::Version::try_from(v).ok())
                    .unwrap_or_default();
                Some((alg, version, Params::try_from(&h).ok()?))
            });
        // Nobody with a password: nobody can sign in, nothing to hide.
        let dummy = params.and_then(|(alg, version, params)| {
            hash_with(Argon2::new(alg, version, params), &new_token("nobody-")).ok()
        });
        Users {
            by_name: users.iter().map(|u| (u.name.clone(), u.clone())).collect(),
            dummy,
        }
    }

    /// A user by name.
    pub fn get(&self, name: &str) -> Option<&crate::config::auth::UserConfig> {
        self.by_name.get(name)
    }

    /// The caller `name` is, if the config defines them and their role and
    /// jurisdiction make sense (a broken entry is refused, not widened).
    pub fn caller(&self, name: &str, via: Via) -> Option<Caller> {
        let u = self.by_name.get(name)?;
        let role = Role::parse(&u.role)?;
        let scope = Jurisdiction::for_role(role, u.jurisdiction.as_deref()).ok()?;
        Some(Caller {
            name: u.name.clone(),
            role,
            scope,
            via,
        })
    }

    /// True when `password` is `name`'s. A name that does not exist or has
    /// no password costs the same check against a dummy hash. Takes tens of
    /// milliseconds by design: call off the async workers.
    pub fn verify(&self, name: &str, password: &str) -> bool {
        match self.get(name).and_then(|u| u.password_hash.as_deref()) {
            Some(phc) => verify_password(password, phc),
            None => {
                if let Some(d) = &self.dummy {
                    let _ = verify_password(password, d);
                }
                false
            }
        }
    }

    /// The parameters unknown names are checked with (for tests).
    pub fn dummy_params(&self) -> Option<(u32, u32, u32)> {
        self.dummy.as_deref().and_then(phc_params)
    }
}

/// A new random token: 32 bytes, URL-safe base64, with a prefix saying what
/// it is (`mws_` session, `mwt_` API token, `mwc_` CSRF).
pub fn new_token(prefix: &str) -> String {
    use base64::Engine;
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    )
}

/// The hex SHA-256 of a token: what the store keeps.
pub fn token_hash(token: &str) -> String {
    let d = Sha256::digest(token.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_checks_against_its_hash_and_nothing_else() {
        let h = hash_password_cheap("正确的马电池订书钉").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"), "{h}");
        assert!(check_phc(&h).is_ok());
        assert!(verify_password("正确的马电池订书钉", &h));
        assert!(!verify_password("正确的马电池订书", &h));
        assert!(!verify_password("", &h));
        assert!(!verify_password("x", "not a hash"));
        assert!(check_phc("hunter2").is_err());
        assert!(check_phc("$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA").is_err());
        // Two hashes of one password differ (salt).
        assert_ne!(h, hash_password_cheap("正确的马电池订书钉").unwrap());
    }

    #[test]
    fn the_default_hash_is_argon2id_with_owasp_parameters() {
        let h = hash_password("pw").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("pw", &h));
    }

    #[test]
    fn weak_argon2_parameters_are_told_apart() {
        assert!(params_strong_enough((19456, 2, 1)));
        assert!(params_strong_enough((47104, 1, 1)));
        assert!(params_strong_enough((65536, 3, 4)));
        assert!(!params_strong_enough((8192, 1, 1)));
        assert!(!params_strong_enough((19456, 1, 1)));
        assert!(!params_strong_enough((4096, 10, 1)));
        let cheap = hash_password_cheap("x").unwrap();
        assert_eq!(phc_params(&cheap), Some((8192, 1, 1)));
        assert_eq!(phc_params("nope"), None);
    }

    #[test]
    fn unknown_names_cost_a_check_with_the_users_own_parameters() {
        use crate::config::auth::UserConfig;
        let u = |name: &str, hash: Option<String>| UserConfig {
            name: name.into(),
            role: "admin".into(),
            jurisdiction: None,
            password_hash: hash,
        };
        let users = Users::new(&[
            u("bot", None),
            u(
                "zs",
                Some(hash_password_cheap("正确的马电池订书钉").unwrap()),
            ),
        ]);
        // Unknown names are checked against a hash as costly as the users'
        // own (cheap here), not one of other parameters.
        assert_eq!(users.dummy_params(), Some((8192, 1, 1)));
        assert!(users.verify("zs", "正确的马电池订书钉"));
        assert!(!users.verify("zs", "wrong"));
        assert!(!users.verify("nobody", "正确的马电池订书钉"));
        assert!(!users.verify("bot", ""));
        // A caller only for a defined user.
        assert!(users.caller("zs", Via::Token { id: 1 }).is_some());
        assert!(users.caller("ghost", Via::Token { id: 1 }).is_none());
        // Nobody has a password: nothing to compare against.
        assert_eq!(Users::new(&[u("bot", None)]).dummy_params(), None);
    }

    #[test]
    fn roles_take_the_jurisdiction_of_their_level() {
        use Role::*;
        let ok = |r, c: Option<&str>| Jurisdiction::for_role(r, c);
        assert_eq!(ok(Admin, None), Ok(Scope::All));
        assert_eq!(ok(ProvinceDesk, None), Ok(Scope::All));
        assert!(ok(Auditor, Some("140121")).is_err());
        assert!(ok(CountyRegulator, None).is_err());
        assert!(ok(CountyRegulator, Some("140100")).is_err());
        assert!(ok(Inspector, Some("140121")).is_ok());
        assert!(ok(CityRegulator, Some("140121")).is_err());
        assert!(ok(CityRegulator, Some("140100")).is_ok());
        assert!(ok(ProvinceDesk, Some("140000")).is_ok());
        assert!(ok(CountyRegulator, Some("14012x")).is_err());
    }

    #[test]
    fn scopes_cover_their_own_mines_only() {
        let county = Jurisdiction::for_role(Role::CountyRegulator, Some("140121")).unwrap();
        let city = Jurisdiction::for_role(Role::CityRegulator, Some("140100")).unwrap();
        assert!(county.covers("140000", "140100", "140121"));
        assert!(!county.covers("140000", "140100", "140181"));
        assert!(city.covers("140000", "140100", "140181"));
        assert!(!city.covers("140000", "140400", "140481"));
        assert!(Scope::All.covers("x", "y", "z"));
        assert!(county.covers_county("140121"));
        assert!(!county.covers_county("140181"));
        assert!(city.covers_county("140181"));
        assert!(!city.covers_county("140481"));
        assert!(!county.covers_county("garbage"));
        // Counting over a wider jurisdiction counts only one's own.
        assert_eq!(county.narrow(""), Some("140121".into()));
        assert_eq!(county.narrow("140100"), Some("140121".into()));
        assert_eq!(county.narrow("140000"), Some("140121".into()));
        assert_eq!(county.narrow("140121"), Some("140121".into()));
        assert_eq!(county.narrow("140181"), None);
        assert_eq!(county.narrow("140400"), None);
        assert_eq!(city.narrow("140181"), Some("140181".into()));
        assert_eq!(city.narrow("140481"), None);
        assert_eq!(Scope::All.narrow(""), Some(String::new()));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert!(!same_secret("", "a"));
        let t = new_token("mws_");
        assert!(t.starts_with("mws_") && t.len() == 4 + 43, "{t}");
        assert_ne!(t, new_token("mws_"));
        assert_eq!(token_hash("a").len(), 64);
    }

    #[test]
    fn only_api_tokens_may_name_another_actor() {
        let mut c = Caller {
            name: "county-140121".into(),
            role: Role::CountyRegulator,
            scope: Scope::All,
            via: Via::Session { csrf: "x".into() },
        };
        assert_eq!(c.actor("someone-else"), "county-140121");
        c.via = Via::Token { id: 1 };
        assert_eq!(c.actor("inspector-a"), "inspector-a");
        assert_eq!(c.actor(" "), "county-140121");
    }
}
