//! Outgoing mail: messages rendered from templates (text and HTML), queued in the
//! store's outbox by the request that decides to send them, and sent over SMTP by a
//! background sender in every replica.
//!
//! Sending never blocks a request and survives a restart: a request only writes the
//! rendered mail to the outbox ([`MailOutbox`](crate::store::MailOutbox)), often in
//! the same transaction as the token the mail carries. The sender claims due mails
//! under a lease, so two replicas never send one mail at once and a crashed replica's
//! mails are taken over when its lease ends. A mail is removed once the SMTP server
//! accepted it; a failed attempt is retried with a doubling delay up to
//! `[email] max_attempts`, and a permanent refusal (5xx) is given up at once. Bodies
//! and recipients are never logged: a mail may carry a link that resets a password.
//! For the same reason the bodies wait in the outbox sealed with the master key
//! (bound to their outbox row): a copy of the database alone does not hold live
//! links. A rotation of the master key leaves them be; they open while the old key
//! is among `previous_master_key_files`, and a mail that no key opens is dropped.
//! In development (`[email] directory`), mails are written there as `.eml` files
//! instead, so the demo's registration links can be opened without a mail server.

use crate::clock::SharedClock;
use crate::config::{EmailSettings, SmtpSecurity};
use crate::secrets::MasterKey;
use crate::store::{MailDelivery, OutgoingMail, SharedStore};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use lettre::message::header::ContentTransferEncoding;
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use minijinja::{AutoEscape, Environment};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// What a sealed body is bound to (with its outbox id), and how it is marked.
const OUTBOX_TABLE: &str = "mail_outbox";
const SEAL_VERSION: u32 = 1;
const SEALED_PREFIX: &str = "sealed:";

/// Mails claimed (and sent concurrently) per round.
const CLAIM_BATCH: u32 = 16;
/// The longest wait between two attempts.
const MAX_RETRY_DELAY: i64 = 3600;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail template {name}: {source}")]
    Template {
        name: &'static str,
        source: minijinja::Error,
    },
    #[error("the SMTP transport cannot be set up: {0}")]
    Transport(String),
    #[error("sealing or opening a mail body: {0}")]
    Sealing(String),
}

/// The kinds of mail the broker sends, each a pair of templates
/// (`templates/email/<name>.txt` and `.html`) and a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    PasswordReset,
    /// The link that creates a registered account.
    ConfirmRegistration,
    /// To an address that already has an account, instead of a registration link.
    AlreadyRegistered,
    /// The link that makes an address an account's verified email.
    VerifyEmail,
    /// To the old address, after the account's email changed.
    EmailChanged,
}

impl MailKind {
    const ALL: [MailKind; 5] = [
        MailKind::PasswordReset,
        MailKind::ConfirmRegistration,
        MailKind::AlreadyRegistered,
        MailKind::VerifyEmail,
        MailKind::EmailChanged,
    ];

    fn name(self) -> &'static str {
        match self {
            MailKind::PasswordReset => "password_reset",
            MailKind::ConfirmRegistration => "confirm_registration",
            MailKind::AlreadyRegistered => "already_registered",
            MailKind::VerifyEmail => "verify_email",
            MailKind::EmailChanged => "email_changed",
        }
    }

    fn subject(self) -> &'static str {
        match self {
            MailKind::PasswordReset => "Reset your password",
            MailKind::ConfirmRegistration => "Confirm your new account",
            MailKind::AlreadyRegistered => "You already have an account",
            MailKind::VerifyEmail => "Confirm your email address",
            MailKind::EmailChanged => "Your email address changed",
        }
    }

    /// Its text and HTML templates (name, source), built into the binary.
    fn sources(self) -> [(&'static str, &'static str); 2] {
        macro_rules! pair {
            ($name:literal) => {
                [
                    (
                        concat!($name, ".txt"),
                        include_str!(concat!("../../templates/email/", $name, ".txt")),
                    ),
                    (
                        concat!($name, ".html"),
                        include_str!(concat!("../../templates/email/", $name, ".html")),
                    ),
                ]
            };
        }
        match self {
            MailKind::PasswordReset => pair!("password_reset"),
            MailKind::ConfirmRegistration => pair!("confirm_registration"),
            MailKind::AlreadyRegistered => pair!("already_registered"),
            MailKind::VerifyEmail => pair!("verify_email"),
            MailKind::EmailChanged => pair!("email_changed"),
        }
    }
}

/// The mail templates, built into the binary.
#[derive(Debug)]
pub struct MailTemplates {
    env: Environment<'static>,
}

impl MailTemplates {
    pub fn new() -> Result<Self, MailError> {
        let mut env = Environment::new();
        // HTML bodies are escaped (names come from people); text bodies are not.
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        for kind in MailKind::ALL {
            for (file, source) in kind.sources() {
                env.add_template(file, source)
                    .map_err(|source| MailError::Template {
                        name: kind.name(),
                        source,
                    })?;
            }
        }
        Ok(MailTemplates { env })
    }

    /// Renders `kind` for `to` with `ctx`.
    pub fn render<S: Serialize>(
        &self,
        kind: MailKind,
        to: &str,
        ctx: S,
    ) -> Result<OutgoingMail, MailError> {
        let ctx = minijinja::Value::from_serialize(&ctx);
        let render = |ext: &str| {
            let name = kind.name();
            self.env
                .get_template(&format!("{name}.{ext}"))
                .and_then(|t| t.render(&ctx))
                .map_err(|source| MailError::Template { name, source })
        };
        Ok(OutgoingMail {
            to: to.to_string(),
            subject: kind.subject().to_string(),
            text: render("txt")?,
            html: render("html")?,
        })
    }
}

/// Everything the broker needs to send mail: the templates, the SMTP transport,
/// the settings, and the bell that wakes the sender.
#[derive(Debug)]
pub struct Mail {
    pub templates: MailTemplates,
    pub settings: EmailSettings,
    master: Arc<MasterKey>,
    from: Mailbox,
    transport: Transport,
    wake: tokio::sync::Notify,
}

/// How mail leaves: SMTP, or files in a directory (development).
#[derive(Debug)]
enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(AsyncFileTransport<Tokio1Executor>),
}

impl Mail {
    /// Sets up the transport; no connection is made until the first mail.
    pub fn new(settings: &EmailSettings, master: Arc<MasterKey>) -> Result<Self, MailError> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| MailError::Transport(format!("email.from: {e}")))?;
        if let Some(directory) = &settings.directory {
            std::fs::create_dir_all(directory).map_err(|e| {
                MailError::Transport(format!("email.directory {}: {e}", directory.display()))
            })?;
            return Ok(Mail {
                templates: MailTemplates::new()?,
                settings: settings.clone(),
                master,
                from,
                transport: Transport::Files(AsyncFileTransport::new(directory)),
                wake: tokio::sync::Notify::new(),
            });
        }
        let tls_params = || {
            TlsParameters::builder(settings.host.clone())
                .build_rustls()
                .map_err(|e| MailError::Transport(e.to_string()))
        };
        let tls = match settings.security {
            SmtpSecurity::StartTls => Tls::Required(tls_params()?),
            SmtpSecurity::ImplicitTls => Tls::Wrapper(tls_params()?),
            SmtpSecurity::Plain => Tls::None,
        };
        let timeout = Duration::from_secs(u64::try_from(settings.timeout).unwrap_or(10));
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.clone())
                .port(settings.port)
                .tls(tls)
                .timeout(Some(timeout));
        if let Some((user, password)) = &settings.credentials {
            builder = builder.credentials(Credentials::new(
                user.expose().to_string(),
                password.expose().to_string(),
            ));
        }
        Ok(Mail {
            templates: MailTemplates::new()?,
            settings: settings.clone(),
            master,
            from,
            transport: Transport::Smtp(builder.build()),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// Renders `kind` for `to` with `ctx`, its bodies sealed for the outbox row
    /// `id` (the id it must be queued under).
    pub fn compose<S: Serialize>(
        &self,
        id: &str,
        kind: MailKind,
        to: &str,
        ctx: S,
    ) -> Result<OutgoingMail, MailError> {
        let mut mail = self.templates.render(kind, to, ctx)?;
        mail.text = self.seal(id, &mail.text)?;
        mail.html = self.seal(id, &mail.html)?;
        Ok(mail)
    }

    fn seal(&self, id: &str, body: &str) -> Result<String, MailError> {
        let sealed = self
            .master
            .seal(OUTBOX_TABLE, id, SEAL_VERSION, body.as_bytes())
            .map_err(|e| MailError::Sealing(e.to_string()))?;
        Ok(format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed)))
    }

    /// A body as queued: opened when sealed, as it is otherwise (mails queued before
    /// bodies were sealed).
    fn open(&self, id: &str, body: &str) -> Result<String, MailError> {
        let Some(encoded) = body.strip_prefix(SEALED_PREFIX) else {
            return Ok(body.to_string());
        };
        let sealed = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|e| MailError::Sealing(e.to_string()))?;
        let plain = self
            .master
            .open(OUTBOX_TABLE, id, SEAL_VERSION, &sealed)
            .map_err(|e| MailError::Sealing(e.to_string()))?;
        String::from_utf8(plain).map_err(|e| MailError::Sealing(e.to_string()))
    }

    /// Tells the sender that mail was queued.
    pub fn queued(&self) {
        self.wake.notify_one();
    }

    /// Text and HTML alternatives. A mail written to a file keeps its text part as
    /// it is, so a person reads (and copies) the link with any editor;
    /// over SMTP lettre picks an encoding every server takes.
    fn body(&self, mail: &OutgoingMail) -> MultiPart {
        let lettre_picks =
            || MultiPart::alternative_plain_html(mail.text.clone(), mail.html.clone());
        if matches!(self.transport, Transport::Smtp(_)) {
            return lettre_picks();
        }
        // A file never crosses SMTP, so the text may go as it is ("binary"): lettre
        // would pick quoted-printable for any line over 76 characters, as links are.
        match Body::new_with_encoding(mail.text.clone(), ContentTransferEncoding::Binary) {
            Ok(text) => MultiPart::alternative()
                .singlepart(SinglePart::plain(text))
                .singlepart(SinglePart::html(mail.html.clone())),
            Err(_) => lettre_picks(),
        }
    }

    /// One attempt at the mail queued as `id`.
    async fn send(&self, id: &str, mail: &OutgoingMail) -> Attempt {
        let opened = self
            .open(id, &mail.text)
            .and_then(|text| Ok((text, self.open(id, &mail.html)?)));
        let (text, html) = match opened {
            Ok(bodies) => bodies,
            Err(e) => return Attempt::Undeliverable(format!("its bodies do not open: {e}")),
        };
        let mail = &OutgoingMail {
            to: mail.to.clone(),
            subject: mail.subject.clone(),
            text,
            html,
        };
        let to: Mailbox = match mail.to.parse() {
            Ok(to) => to,
            Err(_) => return Attempt::Undeliverable("the recipient is not a mailbox".into()),
        };
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .multipart(self.body(mail));
        let message = match message {
            Ok(m) => m,
            Err(e) => return Attempt::Undeliverable(e.to_string()),
        };
        match &self.transport {
            Transport::Smtp(smtp) => match smtp.send(message).await {
                Ok(_) => Attempt::Sent,
                Err(e) if e.is_permanent() => Attempt::Undeliverable(e.to_string()),
                Err(e) => Attempt::Failed(e.to_string()),
            },
            Transport::Files(files) => match files.send(message).await {
                Ok(_) => Attempt::Sent,
                Err(e) => Attempt::Failed(e.to_string()),
            },
        }
    }
}

/// What one attempt came to.
enum Attempt {
    Sent,
    Failed(String),
    /// Refused for good (a 5xx answer, a malformed address): not retried.
    Undeliverable(String),
}

/// The wait before attempt `attempts + 1`, after `attempts` failed ones.
fn retry_delay(first: i64, attempts: u32) -> i64 {
    let factor = 1i64 << attempts.saturating_sub(1).min(20);
    first.saturating_mul(factor).min(MAX_RETRY_DELAY)
}

/// What the sender works with.
#[derive(Debug, Clone)]
pub struct Sender {
    pub store: SharedStore,
    pub clock: SharedClock,
    pub mail: Arc<Mail>,
    /// This replica's lease owner id.
    pub owner: String,
}

impl Sender {
    /// Sends one claimed mail and records the outcome in the outbox.
    async fn deliver(&self, delivery: MailDelivery) {
        let settings = &self.mail.settings;
        let id = delivery.id.as_str();
        let attempts = delivery.attempts.saturating_add(1);
        let store = &self.store;
        let finished = match self.mail.send(id, &delivery.mail).await {
            Attempt::Sent => {
                tracing::info!(mail_id = id, attempts, "mail sent");
                store.finish_mail_delivery(id, &self.owner).await
            }
            Attempt::Undeliverable(why) => {
                tracing::error!(mail_id = id, attempts, error = %why, "mail refused for good, dropped");
                store.finish_mail_delivery(id, &self.owner).await
            }
            Attempt::Failed(why) if attempts >= settings.max_attempts => {
                tracing::error!(mail_id = id, attempts, error = %why, "mail abandoned");
                store.finish_mail_delivery(id, &self.owner).await
            }
            Attempt::Failed(why) => {
                let wait = retry_delay(settings.retry_delay, attempts);
                tracing::warn!(mail_id = id, attempts, retry_in = wait, error = %why, "sending mail failed");
                store
                    .defer_mail_delivery(id, &self.owner, attempts, self.clock.now() + wait)
                    .await
            }
        };
        match finished {
            Ok(true) => {}
            Ok(false) => tracing::warn!(mail_id = id, "mail lease was lost"),
            Err(e) => tracing::error!(mail_id = id, error = %e, "recording a mail attempt failed"),
        }
    }

    /// Sends every mail that is due now, batch by batch, until none is left or
    /// `deadline` passes. Returns how many mails were attempted.
    pub async fn deliver_due(&self, deadline: tokio::time::Instant) -> usize {
        let mut attempted = 0;
        while tokio::time::Instant::now() < deadline {
            let now = self.clock.now();
            let lease_until = now + self.mail.settings.lease;
            let claimed = match self
                .store
                .claim_mail_deliveries(&self.owner, now, lease_until, CLAIM_BATCH)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming mails failed");
                    break;
                }
            };
            if claimed.is_empty() {
                break;
            }
            let full = claimed.len() == CLAIM_BATCH as usize;
            attempted += claimed.len();
            let mut sends = tokio::task::JoinSet::new();
            for d in claimed {
                let sender = self.clone();
                sends.spawn(async move { sender.deliver(d).await });
            }
            let all = async { while sends.join_next().await.is_some() {} };
            if tokio::time::timeout_at(deadline, all).await.is_err() {
                // Unfinished mails stay leased; another pass takes them when the
                // lease ends.
                tracing::warn!("mail pass cut short");
                break;
            }
            if !full {
                break;
            }
        }
        attempted
    }

    /// The sender: a pass whenever mail is queued here, and at least every few
    /// seconds for retries and other replicas' mails. Runs until the process ends.
    pub async fn run(self) {
        let tick = Duration::from_secs(
            u64::try_from(self.mail.settings.retry_delay.clamp(1, 10)).unwrap_or(5),
        );
        // A pass may not run longer than a lease: past it, another replica could
        // claim the same mails.
        let pass_limit =
            Duration::from_secs(u64::try_from(self.mail.settings.lease).unwrap_or(120) / 2);
        loop {
            self.deliver_due(tokio::time::Instant::now() + pass_limit)
                .await;
            tokio::select! {
                () = self.mail.wake.notified() => {}
                () = tokio::time::sleep(tick) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_master() -> Arc<MasterKey> {
        Arc::new(MasterKey::from_bytes(&[7u8; 32]).unwrap())
    }

    #[test]
    fn bodies_wait_sealed_to_their_outbox_row_and_open_only_there() {
        let dir = tempfile::tempdir().unwrap();
        let mail = Mail::new(&directory_settings(dir.path()), test_master()).unwrap();
        let link = "https://id.example/password/reset/local?token=secret-token";
        let sealed = mail
            .compose(
                "m1",
                MailKind::PasswordReset,
                "a@example.com",
                minijinja::context! { name => "Ann", issuer => "https://id.example", minutes => 30, link },
            )
            .unwrap();
        assert!(!sealed.text.contains("secret-token") && !sealed.html.contains("secret-token"));
        assert!(mail.open("m1", &sealed.text).unwrap().contains(link));
        assert!(mail.open("m2", &sealed.text).is_err(), "bound to its row");
        let other = Mail::new(
            &directory_settings(dir.path()),
            Arc::new(MasterKey::from_bytes(&[8u8; 32]).unwrap()),
        )
        .unwrap();
        assert!(
            other.open("m1", &sealed.text).is_err(),
            "another key opens nothing"
        );
        assert_eq!(mail.open("m1", "plain old body").unwrap(), "plain old body");
    }

    fn directory_settings(dir: &std::path::Path) -> EmailSettings {
        EmailSettings {
            host: String::new(),
            port: 0,
            security: SmtpSecurity::Plain,
            credentials: None,
            directory: Some(dir.to_path_buf()),
            from: "Demo <demo@example.com>".into(),
            timeout: 10,
            max_attempts: 3,
            retry_delay: 1,
            lease: 20,
        }
    }

    #[tokio::test]
    async fn a_mail_directory_gets_each_mail_as_a_file_whose_link_reads_plainly() {
        let dir = tempfile::tempdir().unwrap();
        let mail = Mail::new(&directory_settings(&dir.path().join("mail")), test_master()).unwrap();
        let link = format!(
            "https://id.example/register/local/confirm?token={}",
            "x".repeat(60)
        );
        let outgoing = mail
            .templates
            .render(
                MailKind::ConfirmRegistration,
                "new@example.com",
                minijinja::context! { name => "Jörg", issuer => "https://id.example", hours => 24, link => &link },
            )
            .unwrap();
        assert!(matches!(mail.send("m1", &outgoing).await, Attempt::Sent));
        let files: Vec<_> = std::fs::read_dir(dir.path().join("mail"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1);
        let eml = std::fs::read_to_string(&files[0]).unwrap();
        assert!(eml.contains("To: new@example.com"), "{eml}");
        assert!(eml.contains("Subject: Confirm your new account"), "{eml}");
        assert!(eml.contains(&link), "the link is one plain line: {eml}");
        assert!(eml.contains("Hello Jörg,"), "{eml}");
    }

    #[test]
    fn retries_wait_twice_as_long_each_time_up_to_an_hour() {
        assert_eq!(retry_delay(30, 1), 30);
        assert_eq!(retry_delay(30, 2), 60);
        assert_eq!(retry_delay(30, 40), MAX_RETRY_DELAY);
    }

    #[test]
    fn the_html_body_escapes_what_the_text_body_keeps() {
        let t = MailTemplates::new().unwrap();
        let mail = t
            .render(
                MailKind::PasswordReset,
                "a@example.com",
                minijinja::context! {
                    name => "<b>Eve</b>",
                    issuer => "https://id.example",
                    minutes => 30,
                    link => "https://id.example/password/reset?token=abc&x=1",
                },
            )
            .unwrap();
        assert_eq!(mail.subject, "Reset your password");
        assert!(mail.text.contains("Hello <b>Eve</b>,"));
        assert!(
            mail.text
                .contains("https://id.example/password/reset?token=abc&x=1")
        );
        assert!(mail.html.contains("&lt;b&gt;Eve&lt;"));
        assert!(!mail.html.contains("<b>Eve"));
        assert!(mail.html.contains("within 30 minutes"));
    }
}
