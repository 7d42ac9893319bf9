//! Mail channel: one plain-text mail per delivery over SMTP (lettre), with
//! the lead item's title as subject (a summary line for several items) and
//! a `Message-ID` derived from the delivery's key, so a resend of the same
//! message is recognisable as such. 4xx answers and connection trouble are
//! retried, 5xx answers are permanent.

use std::time::Duration;

use anyhow::Context;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use sha2::{Digest, Sha256};

use super::{Channel, Delivery, SendError, SendFuture, markdown};
use crate::config::channels::{ChannelConfig, SmtpTls};

/// The `Message-ID` for a delivery key (angle brackets included): the same
/// key always gives the same id.
pub fn message_id(key: &str, from: &Mailbox) -> String {
    let digest = super::hex(&Sha256::digest(key.as_bytes()));
    format!("<minewatch.{}@{}>", &digest[..32], from.email.domain())
}

/// A mail channel.
pub struct Smtp {
    name: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl Smtp {
    /// Builds the channel from its config.
    pub fn new(cfg: &ChannelConfig, timeout: Duration) -> anyhow::Result<Smtp> {
        super::install_tls_provider();
        let host = cfg.host.as_deref().context("smtp channel without host")?;
        let from: Mailbox = cfg
            .from
            .as_deref()
            .context("smtp channel without from")?
            .parse()
            .context("smtp from")?;
        let to = cfg
            .to
            .iter()
            .map(|t| {
                t.parse::<Mailbox>()
                    .with_context(|| format!("smtp to {t:?}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!to.is_empty(), "smtp channel without recipients");
        let mut builder = match cfg.smtp_tls() {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)?,
        }
        .port(cfg.smtp_port())
        .timeout(Some(timeout));
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
        }
        Ok(Smtp {
            name: cfg.name.clone(),
            from,
            to,
            transport: builder.build(),
        })
    }

    /// The mail for `d`.
    pub fn message(&self, d: &Delivery) -> Result<Message, SendError> {
        let (subject, body) = markdown::plain(d);
        let mut m = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(message_id(&d.key, &self.from)))
            .header(ContentType::TEXT_PLAIN);
        for t in &self.to {
            m = m.to(t.clone());
        }
        m.body(body)
            .map_err(|e| SendError::Permanent(format!("cannot build the mail: {e}")))
    }

    async fn deliver(&self, d: &Delivery) -> Result<(), SendError> {
        let m = self.message(d)?;
        match self.transport.send(m).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::Permanent(format!("SMTP: {e}"))),
            Err(e) => Err(SendError::retry(format!("SMTP: {e}"))),
        }
    }
}

impl Channel for Smtp {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, d: &'a Delivery) -> SendFuture<'a> {
        Box::pin(self.deliver(d))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::alert::channels::tests::note;
    use crate::config::channels::ChannelKind;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    /// What the test SMTP receiver got: one entry per mail (its DATA).
    #[derive(Default)]
    pub struct Inbox {
        pub mails: Mutex<Vec<String>>,
    }

    /// A minimal SMTP receiver: 220, EHLO/HELO 250, MAIL/RCPT 250, DATA
    /// 354, `.` 250 (or `reply_after_data` for the first `fail_first`
    /// mails), QUIT 221.
    pub async fn smtp_receiver(
        fail_first: usize,
        reply_after_data: &'static str,
    ) -> (u16, Arc<Inbox>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let inbox = Arc::new(Inbox::default());
        let inbox2 = inbox.clone();
        let fails = Arc::new(Mutex::new(fail_first));
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let inbox = inbox2.clone();
                let fails = fails.clone();
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut lines = BufReader::new(r).lines();
                    let _ = w.write_all(b"220 test ESMTP\r\n").await;
                    let mut in_data = false;
                    let mut data = String::new();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if in_data {
                            if line == "." {
                                in_data = false;
                                let reply = {
                                    let mut f = fails.lock().expect("lock");
                                    if *f > 0 {
                                        *f -= 1;
                                        reply_after_data
                                    } else {
                                        inbox
                                            .mails
                                            .lock()
                                            .expect("lock")
                                            .push(std::mem::take(&mut data));
                                        "250 2.0.0 queued"
                                    }
                                };
                                data.clear();
                                let _ = w.write_all(format!("{reply}\r\n").as_bytes()).await;
                            } else {
                                data.push_str(&line);
                                data.push('\n');
                            }
                            continue;
                        }
                        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                        let reply: &[u8] = match verb.as_str() {
                            "EHLO" => b"250-test\r\n250 8BITMIME\r\n",
                            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 ok\r\n",
                            "DATA" => {
                                in_data = true;
                                b"354 go ahead\r\n"
                            }
                            "QUIT" => {
                                let _ = w.write_all(b"221 bye\r\n").await;
                                break;
                            }
                            _ => b"502 not implemented\r\n",
                        };
                        let _ = w.write_all(reply).await;
                    }
                });
            }
        });
        (port, inbox)
    }

    pub fn smtp_config(name: &str, port: u16) -> ChannelConfig {
        let mut cfg = ChannelConfig::new(name, ChannelKind::Smtp);
        cfg.host = Some("127.0.0.1".into());
        cfg.port = Some(port);
        cfg.tls = Some(SmtpTls::None);
        cfg.from = Some("minewatch <alerts@example.gov.cn>".into());
        cfg.to = vec!["duty@example.gov.cn".into()];
        cfg
    }

    #[test]
    fn the_message_id_follows_the_key() {
        let from: Mailbox = "a@example.gov.cn".parse().expect("mailbox");
        let a = message_id("a1:1:mail", &from);
        assert_eq!(a, message_id("a1:1:mail", &from));
        assert_ne!(a, message_id("a1:2:mail", &from));
        assert!(a.starts_with("<minewatch.") && a.ends_with("@example.gov.cn>"));
    }

    #[tokio::test]
    async fn a_mail_reaches_the_receiver_with_subject_and_message_id() {
        let (port, inbox) = smtp_receiver(0, "").await;
        let ch = Smtp::new(&smtp_config("mail", port), Duration::from_secs(5)).expect("channel");
        let d = Delivery {
            key: "a1:1:mail".into(),
            items: vec![note(1, "m1", "evacuation", "critical")],
        };
        ch.send(&d).await.expect("delivered");
        let mails = inbox.mails.lock().expect("lock").clone();
        assert_eq!(mails.len(), 1);
        let mail = &mails[0];
        let id = message_id("a1:1:mail", &"alerts@example.gov.cn".parse().expect("mb"));
        assert!(mail.contains(&format!("Message-ID: {id}")), "{mail}");
        // The subject is encoded (it is Chinese); decode the header.
        let subject_line = mail
            .lines()
            .find(|l| l.starts_with("Subject: "))
            .expect("subject");
        assert!(subject_line.contains("=?utf-8?"), "{subject_line}");
        let subject = decode_words(mail);
        assert!(subject.starts_with("【撤人】m1号煤矿"), "{subject}");
    }

    #[tokio::test]
    async fn transient_answers_are_retried_and_permanent_ones_are_not() {
        let (port, _) = smtp_receiver(1, "451 4.3.0 try later").await;
        let ch = Smtp::new(&smtp_config("mail", port), Duration::from_secs(5)).expect("channel");
        let d = Delivery {
            key: "k".into(),
            items: vec![note(1, "m1", "overlimit", "major")],
        };
        assert!(matches!(ch.send(&d).await, Err(SendError::Retry { .. })));
        ch.send(&d).await.expect("second try delivered");

        let (port, _) = smtp_receiver(1, "554 5.7.1 rejected").await;
        let ch = Smtp::new(&smtp_config("mail", port), Duration::from_secs(5)).expect("channel");
        assert!(matches!(ch.send(&d).await, Err(SendError::Permanent(_))));
    }

    /// Decodes the (possibly folded) RFC 2047 Subject header of `mail`.
    fn decode_words(mail: &str) -> String {
        use base64::Engine;
        let mut header = String::new();
        let mut lines = mail.lines();
        for l in lines.by_ref() {
            if let Some(rest) = l.strip_prefix("Subject: ") {
                header.push_str(rest);
                break;
            }
        }
        for l in lines {
            if l.starts_with(' ') || l.starts_with('\t') {
                header.push_str(l);
            } else {
                break;
            }
        }
        let mut out = Vec::new();
        for word in header.split_whitespace() {
            if let Some(inner) = word
                .strip_prefix("=?utf-8?b?")
                .or_else(|| word.strip_prefix("=?utf-8?B?"))
                && let Some(b64) = inner.strip_suffix("?=")
                && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64)
            {
                out.extend(bytes);
            } else {
                out.extend(word.as_bytes());
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}
