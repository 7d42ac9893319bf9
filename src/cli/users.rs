//! `minewatch hash-password` and `minewatch create-token`: the two
//! commands that make credentials for the config's users.

use std::process::ExitCode;

use anyhow::Context;

use crate::config;

/// `minewatch hash-password`: reads one line from stdin, prints its
/// argon2id hash.
pub fn hash_password() -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("minewatch: cannot read the password from stdin: {e}");
        return ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!(
            "minewatch: empty password; write it on stdin, e.g. `minewatch hash-password < pw.txt`"
        );
        return ExitCode::from(2);
    }
    let chars = password.chars().count();
    if chars < crate::auth::MIN_PASSWORD_CHARS {
        eprintln!(
            "minewatch: the password is {chars} characters long; use at least {} \
             (a few words make a long password that is easy to remember)",
            crate::auth::MIN_PASSWORD_CHARS
        );
        return ExitCode::from(2);
    }
    match crate::auth::hash_password(password) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            // The error may quote a URL from the config (store, broker).
            eprintln!("minewatch: {}", crate::redact::secrets(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// `minewatch create-token`: a new API token for a configured user,
/// printed once.
pub fn create_token(path: &std::path::Path, user: &str, label: &str) -> anyhow::Result<()> {
    let (config, _) = config::load(path)?;
    let url = config.alerting.store_url(&config.daemon.data_dir);
    let store = crate::store::Store::open(&url).with_context(|| {
        format!(
            "cannot open the store {} (alerting.store)",
            crate::redact::secrets(&url)
        )
    })?;
    let now = chrono::Utc::now().timestamp_millis();
    crate::auth::sessions::sync_config_users(&store, &config.users, now)?;
    let (id, token) =
        store.tx(|db| crate::auth::sessions::create_token(db, user, label, "cli", now))?;
    eprintln!(
        "token {id} for {user}: send it as `Authorization: Bearer <token>`; it is shown once"
    );
    println!("{token}");
    Ok(())
}
