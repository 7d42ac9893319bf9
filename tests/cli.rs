//! Tests of the `minewatch` binary's offline commands: `check-config` on
//! good and broken files, the committed demo config staying equal to what
//! the simulator generates (with a user that can sign in), `hash-password`,
//! and `simulate` failing when its broker acknowledges nothing.

use std::process::Command;

fn minewatch(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_minewatch"))
        .args(args)
        .output()
        .expect("run minewatch");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn root(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_shipped_configs_check_clean() {
    for file in ["config/example.toml", "config/demo-province.toml"] {
        let (code, text) = minewatch(&["check-config", &root(file)]);
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("ok"), "{text}");
        assert!(text.contains("0 warning(s)"), "{text}");
    }
}

#[test]
fn a_broken_config_reports_every_error_with_its_key_and_a_hint() {
    let good = std::fs::read_to_string(root("config/example.toml")).expect("example");
    // An unknown key is reported beside the other errors, in one run.
    let broken = format!("colour = \"red\"\n{good}")
        .replace("\"140121000002\"", "\"1401\"")
        .replace("location = \"face_t0\"", "location = \"corner\"")
        .replace("sensor = \"co\"", "sensor = \"gas\"")
        .replace(
            "alarm = 0.8, power_off = 1.2",
            "alarm = 0.8, power_off = 0.6",
        );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("broken.toml");
    std::fs::write(&file, broken).expect("write");
    let (code, text) = minewatch(&["check-config", file.to_str().expect("utf-8 path")]);
    assert_eq!(code, 2, "{text}");
    for key in [
        "mines[1].code",
        "mines[0].points[1].location",
        "mines[1].points[1].sensor",
        "mines[0].points[5].power_off",
        "colour",
    ] {
        assert!(text.contains(key), "{key} missing:\n{text}");
    }
    assert!(text.contains("5 error(s)"), "{text}");
    assert_eq!(text.matches("hint:").count(), 5, "{text}");
}

#[test]
fn looser_declared_thresholds_are_warnings_not_errors() {
    let good = std::fs::read_to_string(root("config/example.toml")).expect("example");
    let looser = good.replace(
        "location = \"face_t1\", place = \"1101工作面\"",
        "location = \"face_t1\", place = \"1101工作面\", alarm = 1.2",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("looser.toml");
    std::fs::write(&file, looser).expect("write");
    let (code, text) = minewatch(&["check-config", file.to_str().expect("utf-8 path")]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("warning: mines[0].points[0].alarm"), "{text}");
    assert!(text.contains("looser than the rule"), "{text}");
}

#[test]
fn syntax_errors_name_the_line_and_a_missing_file_is_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("syntax.toml");
    std::fs::write(&file, "[daemon]\nshards = = 2\n").expect("write");
    let (code, text) = minewatch(&["check-config", file.to_str().expect("utf-8 path")]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("line 2"), "{text}");
    let (code, text) = minewatch(&["check-config", "/no/such/minewatch.toml"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("cannot read"), "{text}");
}

#[test]
fn the_committed_demo_config_is_what_the_simulator_generates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("demo.toml");
    let (code, text) = minewatch(&[
        "simulate",
        "--mines",
        "20",
        "--points",
        "32",
        "--polling-secs",
        "5",
        "--broker",
        "mqtt://127.0.0.1:1884",
        "--write-config",
        file.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 0, "{text}");
    let generated = std::fs::read_to_string(&file).expect("generated");
    // The province is the committed one; the user with its fresh password
    // is added below it.
    let (province, users) = generated
        .split_once("\n# A user to sign in with")
        .expect("a [[users]] entry is written");
    let committed = std::fs::read_to_string(root("config/demo-province.toml")).expect("committed");
    assert_eq!(province, committed, "regenerate config/demo-province.toml");
    // The printed password signs in as the written user.
    let password = text
        .split("as admin with the password ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .expect("the password is printed");
    let (config, _) = minewatch::config::load(&file).expect("the written config loads");
    let admin = config
        .users
        .iter()
        .find(|u| u.name == "admin")
        .expect("admin");
    assert_eq!(admin.role, "admin");
    let hash = admin.password_hash.as_deref().expect("a hash");
    assert!(minewatch::auth::verify_password(password, hash), "{users}");
    assert!(!generated.contains(password));
}

#[test]
fn hash_password_reads_stdin_and_prints_a_phc_string() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_minewatch"))
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run minewatch");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all("值班密码 1 换班前改掉\n".as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("output");
    assert!(out.status.success());
    let phc = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    // The trailing newline is not part of the password.
    assert!(minewatch::auth::verify_password(
        "值班密码 1 换班前改掉",
        &phc
    ));
    assert!(!minewatch::auth::verify_password(
        "值班密码 1 换班前改掉\n",
        &phc
    ));
    // Nothing on stdin: refused.
    let (code, text) = minewatch(&["hash-password"]);
    assert_eq!(code, 2, "{text}");
    // A short password: refused, with the minimum named.
    let mut child = Command::new(env!("CARGO_BIN_EXE_minewatch"))
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run minewatch");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all("值班密码 1\n".as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("output");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "no hash of a short password");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at least 12"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn simulate_fails_clearly_when_the_broker_never_acknowledges() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let broker = format!("mqtt://127.0.0.1:{port}");
    let (code, text) = minewatch(&[
        "simulate",
        "--broker",
        &broker,
        "--mines",
        "1",
        "--points",
        "2",
        "--seconds",
        "1",
    ]);
    assert_ne!(code, 0, "{text}");
    assert!(text.contains(&format!("publishing to {broker}")), "{text}");
    assert!(text.contains("acknowledged 0 of"), "{text}");
    assert!(text.contains("nothing was delivered"), "{text}");
}
