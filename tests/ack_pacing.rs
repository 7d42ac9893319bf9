//! Acknowledgements keep pace and the number of unacknowledged messages is
//! bounded: a stand-in broker (a few lines of MQTT 3.1.1 on a TCP socket,
//! so that the test sees every PUBACK and controls the pace) pushes QoS 1
//! telemetry at a daemon as fast as the socket takes it. The messages the
//! daemon has read but the broker has not seen acknowledged must never
//! exceed `mqtt.max_inflight_messages` (plus the acknowledgements on the
//! wire), every message must be acknowledged, in order, soon after the
//! last is sent.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use minewatch::daemon::{Daemon, DaemonOptions};

const MESSAGES: u64 = 400;
const READINGS: usize = 500;
const INFLIGHT: usize = 8;
const MINE: &str = "140121000001";
const POINTS: usize = 20;

fn point(i: usize) -> String {
    format!("14012100000101MN0001{:03}", i + 1)
}

fn config(dir: &std::path::Path, broker: &str) -> minewatch::config::Config {
    let mut toml = format!(
        "[daemon]\ndata_dir = \"{}\"\nshards = 2\ntick_ms = 200\n\n\
         [mqtt]\nbroker = \"mqtt://{broker}\"\nclient_id = \"{}\"\npublish_alerts = false\n\
         max_inflight_messages = {INFLIGHT}\n\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\n\
         [[mines]]\ncode = \"{MINE}\"\nname = \"m\"\nprovince = \"140000\"\ncity = \"140100\"\n\
         county = \"140121\"\npolling_secs = 30\npoints = [\n",
        dir.join("data").display(),
        common::unique("pace"),
    );
    for i in 0..POINTS {
        toml.push_str(&format!(
            "  {{ code = \"{}\", sensor = \"0001\", location = \"face_t1\" }},\n",
            point(i)
        ));
    }
    toml.push_str("]\n");
    minewatch::config::parse(&toml).expect("config").0
}

/// One MQTT packet: fixed header byte, remaining length, body.
fn packet(header: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![header];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// Reads one packet: (fixed header byte, body).
fn read_packet(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    let header = b[0];
    let (mut len, mut shift) = (0usize, 0);
    loop {
        s.read_exact(&mut b)?;
        len |= usize::from(b[0] & 0x7f) << shift;
        shift += 7;
        if b[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((header, body))
}

fn publish(pkid: u16, payload: &[u8]) -> Vec<u8> {
    let topic = format!("mines/{MINE}/telemetry");
    let mut body = Vec::with_capacity(payload.len() + topic.len() + 4);
    body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(&pkid.to_be_bytes());
    body.extend_from_slice(payload);
    packet(0x32, &body)
}

fn payload(n: u64, base: i64) -> Vec<u8> {
    let readings: Vec<serde_json::Value> = (0..READINGS)
        .map(|i| {
            serde_json::json!({
                "point": point(i % POINTS),
                "ts": base + (n as i64 * READINGS as i64 + i as i64) * 10,
                "value": 0.3,
                "status": 0
            })
        })
        .collect();
    serde_json::json!({ "readings": readings })
        .to_string()
        .into_bytes()
}

/// What the stand-in broker saw.
#[derive(Default)]
struct Seen {
    sent: AtomicU64,
    acked: AtomicU64,
    out_of_order: AtomicBool,
    done_sending: AtomicBool,
}

/// Serves one client: CONNACK, SUBACK, then `MESSAGES` publishes as fast
/// as the socket takes them, counting PUBACKs (which must come in order).
fn serve(listener: TcpListener, seen: Arc<Seen>) {
    let Ok((mut read, _)) = listener.accept() else {
        return;
    };
    let write = Arc::new(Mutex::new(read.try_clone().expect("clone")));
    let (header, _) = read_packet(&mut read).expect("CONNECT");
    assert_eq!(header >> 4, 1, "CONNECT first");
    write
        .lock()
        .unwrap()
        .write_all(&packet(0x20, &[0, 0]))
        .unwrap();
    let (header, body) = read_packet(&mut read).expect("SUBSCRIBE");
    assert_eq!(header, 0x82, "SUBSCRIBE next");
    let filters = {
        // pkid, then (len, filter, qos) each.
        let (mut at, mut n) = (2, 0);
        while at + 2 <= body.len() {
            let len = usize::from(u16::from_be_bytes([body[at], body[at + 1]]));
            at += 2 + len + 1;
            n += 1;
        }
        n
    };
    let mut suback = body[..2].to_vec();
    suback.extend(std::iter::repeat_n(1u8, filters));
    write
        .lock()
        .unwrap()
        .write_all(&packet(0x90, &suback))
        .unwrap();
    let sender = {
        let (write, seen) = (write.clone(), seen.clone());
        std::thread::spawn(move || {
            let base = common::now_ms() - 7_200_000;
            for n in 1..=MESSAGES {
                let bytes = publish(n as u16, &payload(n, base));
                if write.lock().unwrap().write_all(&bytes).is_err() {
                    return;
                }
                seen.sent.store(n, Ordering::SeqCst);
            }
            seen.done_sending.store(true, Ordering::SeqCst);
        })
    };
    let mut expect = 1u16;
    while let Ok((header, body)) = read_packet(&mut read) {
        match header >> 4 {
            4 => {
                let pkid = u16::from_be_bytes([body[0], body[1]]);
                if pkid != expect {
                    seen.out_of_order.store(true, Ordering::SeqCst);
                }
                expect = pkid.wrapping_add(1);
                seen.acked.fetch_add(1, Ordering::SeqCst);
            }
            12 => {
                let _ = write.lock().unwrap().write_all(&[0xd0, 0]);
            }
            14 => break,
            _ => {}
        }
    }
    let _ = sender.join();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_messages_stay_bounded_and_acknowledgements_keep_pace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let broker = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Seen::default());
    let server = {
        let seen = seen.clone();
        std::thread::spawn(move || serve(listener, seen))
    };
    let daemon = Daemon::start(config(dir.path(), &broker), DaemonOptions::default())
        .await
        .expect("daemon starts");
    let read = daemon.metrics.messages.with_label_values(&["mqtt"]);

    // Messages read by the daemon and not yet acknowledged, sampled as
    // the messages flow: `read` first, then `acked`, so that a sample never
    // counts more than were unacknowledged at the time it was taken (an
    // acknowledgement still on the wire aside).
    let mut most = 0u64;
    let mut most_own = 0i64;
    let started = Instant::now();
    let mut all_sent_at = None;
    while seen.acked.load(Ordering::SeqCst) < MESSAGES {
        let r = read.get();
        let a = seen.acked.load(Ordering::SeqCst);
        most = most.max(r.saturating_sub(a));
        most_own = most_own.max(daemon.metrics.mqtt_unacked.get());
        if all_sent_at.is_none() && seen.done_sending.load(Ordering::SeqCst) {
            all_sent_at = Some(Instant::now());
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not every message acknowledged: read {r}, acknowledged {a} of {MESSAGES} (sent {})",
            seen.sent.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let lag = all_sent_at.map(|t| t.elapsed());
    daemon.shutdown().await;
    let _ = server.join();
    eprintln!(
        "most unacknowledged: {most} as the broker saw it, {most_own} by the daemon's count; \
         last ack {lag:?} after the last publish was written"
    );
    assert!(
        !seen.out_of_order.load(Ordering::SeqCst),
        "PUBACKs out of order"
    );
    assert!(
        most_own <= INFLIGHT as i64,
        "the daemon held {most_own} unacknowledged messages; the limit is {INFLIGHT}"
    );
    // Acknowledgements the daemon has written and the broker not yet read
    // count as unacknowledged here: a window of them on the wire while the
    // daemon reads the next window is normal, more is allowed for a busy
    // machine. (Without the bound, the daemon read ten times the window.)
    assert!(
        most <= (6 * INFLIGHT) as u64,
        "{most} messages read and not acknowledged; the limit is {INFLIGHT}"
    );
}
