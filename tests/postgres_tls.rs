//! The PostgreSQL store over TLS, against the server named by
//! `MINEWATCH_TEST_PG` (`.ci/run` sets it; skipped with a message when
//! unset):
//!
//! - `sslmode=disable` connects in clear;
//! - `sslmode=require` against a server that answers "no TLS" (a stand-in
//!   that speaks just that part of the protocol) fails with a clear error;
//! - when the server has `ssl = on`: `require` connects encrypted
//!   (`pg_stat_ssl`), `verify-full` with the server's own certificate as
//!   root connects by the name in the certificate, and fails for an address
//!   the certificate does not name and for an unrelated CA; `verify-ca`
//!   accepts the address.

use std::io::{Read, Write};

use minewatch::store::{Store, Val};

fn pg() -> Option<String> {
    match std::env::var("MINEWATCH_TEST_PG") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("MINEWATCH_TEST_PG is not set: the PostgreSQL TLS test is skipped");
            None
        }
    }
}

fn with(url: &str, extra: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{extra}")
}

/// Whether this connection is encrypted, as the server sees it.
fn encrypted(store: &Store) -> bool {
    let rows = store
        .read(|db| {
            db.query(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
        })
        .expect("pg_stat_ssl");
    rows.first().and_then(|r| r[0].int()) == Some(1)
}

fn server_setting(store: &Store, name: &str) -> String {
    let rows = store
        .read(|db| db.query(&format!("SHOW {name}"), &[]))
        .expect("show");
    match rows.first().map(|r| &r[0]) {
        Some(Val::Text(s)) => s.clone(),
        other => panic!("SHOW {name}: {other:?}"),
    }
}

#[test]
fn sslmode_disable_works_and_require_refuses_a_server_without_tls() {
    let Some(pg) = pg() else { return };
    let url = minewatch::store::fresh_schema(&pg, "pg_tls_plain").expect("schema");
    let store = Store::open(&with(&url, "sslmode=disable")).expect("sslmode=disable connects");
    assert!(!encrypted(&store));

    // A server that, like PostgreSQL with ssl = off, answers the client's
    // SSLRequest with 'N'.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut request = [0u8; 8];
            if s.read_exact(&mut request).is_ok() {
                assert_eq!(request, [0, 0, 0, 8, 4, 210, 22, 47], "an SSLRequest");
                let _ = s.write_all(b"N");
            }
        }
    });
    let e = match Store::open(&format!(
        "postgres://mw@127.0.0.1:{port}/mw?sslmode=require"
    )) {
        Ok(_) => panic!("sslmode=require accepted a server without TLS"),
        Err(e) => format!("{e:#}"),
    };
    server.join().expect("server");
    assert!(e.contains("cannot connect to PostgreSQL"), "{e}");
    assert!(e.contains("TLS"), "{e}");
}

#[test]
fn sslmode_require_and_verify_full_connect_over_tls_when_the_server_has_it() {
    let Some(pg) = pg() else { return };
    let url = minewatch::store::fresh_schema(&pg, "pg_tls_on").expect("schema");
    let plain = Store::open(&with(&url, "sslmode=disable")).expect("connects");
    if server_setting(&plain, "ssl") != "on" {
        eprintln!("the PostgreSQL server has ssl = off: its TLS part is skipped");
        return;
    }
    let require = Store::open(&with(&url, "sslmode=require")).expect("sslmode=require");
    assert!(encrypted(&require), "require must encrypt");

    // The server's own (self-signed) certificate as the root.
    let cert = server_setting(&plain, "ssl_cert_file");
    let cert = std::path::Path::new(&cert);
    let named = std::fs::read_to_string(cert).ok().and_then(|_| {
        let out = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(cert)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.split("DNS:").nth(1).map(|n| {
            n.split([',', '\n'])
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
    });
    let Some(name) = named else {
        eprintln!(
            "{} is not readable here or names no host (or openssl is absent): \
             the verify-full part is skipped",
            cert.display()
        );
        return;
    };
    let root = format!("sslrootcert={}", cert.display());
    let by_name = url.replacen("@127.0.0.1", &format!("@{name}"), 1);
    if by_name == url {
        eprintln!("MINEWATCH_TEST_PG is not on 127.0.0.1: the verify-full part is skipped");
        return;
    }
    let full = Store::open(&with(&by_name, &format!("sslmode=verify-full&{root}")))
        .expect("verify-full by the certificate's name");
    assert!(encrypted(&full));
    let e = match Store::open(&with(&url, &format!("sslmode=verify-full&{root}"))) {
        Ok(_) => panic!("verify-full accepted a certificate that does not name 127.0.0.1"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("certificate"), "{e}");
    let ca = Store::open(&with(&url, &format!("sslmode=verify-ca&{root}")))
        .expect("verify-ca does not check the name");
    assert!(encrypted(&ca));

    // An unrelated CA.
    let dir = tempfile::tempdir().expect("tempdir");
    let other = dir.path().join("other-ca.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=unrelated", "-keyout"])
        .arg(dir.path().join("other-ca.key"))
        .arg("-out")
        .arg(&other)
        .output()
        .expect("openssl");
    assert!(made.status.success());
    let e = match Store::open(&with(
        &by_name,
        &format!("sslmode=verify-full&sslrootcert={}", other.display()),
    )) {
        Ok(_) => panic!("verify-full accepted a certificate from another CA"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("certificate"), "{e}");
}
