//! Notifiers: each reads its own rows of the persisted outbox and delivers them, with retry
//! and backoff, a timeout per attempt and a bound on its queue. Alertmanager is different:
//! it is sent the set of active alerts, as Prometheus does (`alertmanager.rs`).
//!
//! A slow or dead receiver only delays its own queue: every notifier is its own task, and
//! the engine never waits for one.

pub mod alertmanager;
pub mod bot;
#[cfg(feature = "desktop")]
pub mod desktop;
pub mod email;
pub mod outbox;

pub mod webhook;
pub mod zalo;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;

pub use crate::model::{Event, EventStatus, Language};
use crate::model::{PromDuration, Recorder, Secret, Spanned};
use crate::store::Store;

/// One entry of `alerting.notifiers`: a name, common settings, and exactly one kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    pub name: Spanned<String>,
    /// Language of this notifier's messages; the `alerting.language` by default.
    #[serde(default)]
    pub language: Option<Language>,
    /// Write Vietnamese without diacritics (SMS gateways that only take ASCII).
    #[serde(default)]
    pub strip_diacritics: Option<bool>,
    /// Undelivered messages kept at most; the oldest are dropped (and counted) beyond it.
    #[serde(default)]
    pub max_queue: Option<usize>,
    /// Per attempt.
    #[serde(default)]
    pub timeout: Option<PromDuration>,
    #[serde(default)]
    pub alertmanager: Option<alertmanager::AlertmanagerConfig>,
    #[serde(default)]
    pub webhook: Option<webhook::WebhookConfig>,
    #[serde(default)]
    pub telegram: Option<bot::BotConfig>,
    #[serde(default)]
    pub zalo_bot: Option<bot::BotConfig>,
    #[serde(default)]
    pub zalo_oa: Option<zalo::ZaloOaConfig>,
    #[serde(default)]
    pub email: Option<email::EmailConfig>,
    #[serde(default)]
    pub desktop: Option<DesktopConfig>,
}

/// Desktop notifications on the operator's session bus (cargo feature `desktop`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DesktopConfig {
    /// Milliseconds the notification stays; the server's default when not set.
    #[serde(default)]
    pub expire_ms: Option<u32>,
}

/// A validated notifier.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifierSpec {
    pub name: Arc<str>,
    pub language: Language,
    pub strip_diacritics: bool,
    pub max_queue: usize,
    pub timeout: Duration,
    pub kind: NotifierKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NotifierKind {
    Alertmanager(alertmanager::AlertmanagerSpec),
    Webhook(webhook::WebhookSpec),
    Telegram(bot::BotSpec),
    ZaloBot(bot::BotSpec),
    ZaloOa(zalo::ZaloOaSpec),
    Email(email::EmailSpec),
    Desktop(DesktopConfig),
}

impl NotifierKind {
    /// Whether it delivers messages from the outbox (Alertmanager is sent the active alerts).
    pub fn uses_outbox(&self) -> bool {
        !matches!(self, NotifierKind::Alertmanager(_))
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            NotifierKind::Alertmanager(_) => "alertmanager",
            NotifierKind::Webhook(_) => "webhook",
            NotifierKind::Telegram(_) => "telegram",
            NotifierKind::ZaloBot(_) => "zalo_bot",
            NotifierKind::ZaloOa(_) => "zalo_oa",
            NotifierKind::Email(_) => "email",
            NotifierKind::Desktop(_) => "desktop",
        }
    }
}

impl NotifierConfig {
    /// Validates one notifier; `language` and `strip` are the `alerting` defaults.
    pub fn build(self, language: Language, strip: bool) -> Result<NotifierSpec, String> {
        let NotifierConfig {
            name,
            language: own_language,
            strip_diacritics,
            max_queue,
            timeout,
            alertmanager,
            webhook,
            telegram,
            zalo_bot,
            zalo_oa,
            email,
            desktop,
        } = self;
        let mut kinds = Vec::new();
        if let Some(c) = alertmanager {
            kinds.push(c.build().map(NotifierKind::Alertmanager));
        }
        if let Some(c) = webhook {
            kinds.push(c.build().map(NotifierKind::Webhook));
        }
        if let Some(c) = telegram {
            kinds.push(c.build(bot::Platform::Telegram).map(NotifierKind::Telegram));
        }
        if let Some(c) = zalo_bot {
            kinds.push(c.build(bot::Platform::Zalo).map(NotifierKind::ZaloBot));
        }
        if let Some(c) = zalo_oa {
            kinds.push(c.build().map(NotifierKind::ZaloOa));
        }
        if let Some(c) = email {
            kinds.push(c.build().map(NotifierKind::Email));
        }
        if let Some(c) = desktop {
            if cfg!(feature = "desktop") {
                kinds.push(Ok(NotifierKind::Desktop(c)));
            } else {
                kinds.push(Err(
                    "desktop notifications need iocwatch built with the `desktop` feature (on by default)".into(),
                ));
            }
        }
        let kind = match kinds.len() {
            0 => {
                return Err(format!(
                    "notifier {:?} needs one of alertmanager, webhook, telegram, zalo_bot, zalo_oa, email, desktop",
                    name.value
                ))
            }
            1 => kinds.remove(0)?,
            _ => return Err(format!("notifier {:?} has more than one kind", name.value)),
        };
        let max_queue = max_queue.unwrap_or(10_000);
        if max_queue == 0 {
            return Err("max_queue must be at least 1".into());
        }
        Ok(NotifierSpec {
            name: Arc::from(name.value.as_str()),
            language: own_language.unwrap_or(language),
            strip_diacritics: strip_diacritics.unwrap_or(strip),
            max_queue,
            timeout: timeout.map_or(Duration::from_secs(10), |t| t.0),
            kind,
        })
    }
}

/// A secret from the config: the value itself (with `${VAR}` taken from the environment), or
/// the contents of `*_file` (trailing newline removed), never both. Errors never print the
/// value, the file's content, or a `*_file` value that does not look like a path (the
/// secret itself written there by mistake).
pub fn secret(value: Option<&str>, file: Option<&str>, what: &str) -> Result<Secret, String> {
    match (value, file) {
        (Some(_), Some(_)) => Err(format!("give `{what}` or `{what}_file`, not both")),
        (None, None) => Err(format!("`{what}` or `{what}_file` is required")),
        (Some(v), None) => expand_env(v).map(Secret::new),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| Secret::new(s.trim_end_matches(['\n', '\r'])))
            .map_err(|e| {
                let reason = match e.kind() {
                    std::io::ErrorKind::NotFound => "no such file".to_owned(),
                    std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
                    _ => "cannot be read".to_owned(),
                };
                if path.contains('/') && !path.contains(char::is_whitespace) {
                    format!("cannot read {what}_file {path:?}: {reason}")
                } else {
                    format!(
                        "{what}_file names no readable file ({reason}); it takes the path of a file that holds the secret, not the secret itself"
                    )
                }
            }),
    }
}

/// Replaces `${VAR}` with the variable's value; an unset variable is an error, so a typo
/// does not become an empty password.
pub fn expand_env(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unclosed ${{ in {text:?}"));
        };
        let name = &after[..end];
        let value =
            std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `base` with `segments` appended to its path. Not `Url::join`: a Telegram token
/// (`123:ABC`) as the start of a relative reference would read as a URL scheme.
pub fn append_path(base: &reqwest::Url, segments: &[&str]) -> Result<reqwest::Url, String> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| format!("{base} cannot have a path"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// Parses a URL of a notifier, with `${VAR}` expansion.
pub fn parse_url(text: &str, what: &str) -> Result<reqwest::Url, String> {
    let expanded = expand_env(text)?;
    let url = reqwest::Url::parse(&expanded).map_err(|e| format!("{what}: invalid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{what}: expected an http or https URL"));
    }
    Ok(url)
}

/// Wake-up handles of the notifier tasks, by notifier (and Alertmanager URL); shared with the
/// tasks so that a reload that restarts them keeps the journal's handles valid. The journal
/// wakes them after each commit that gives them something to do.
#[derive(Default)]
pub struct Wakes {
    map: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Notify>>>,
}

impl Wakes {
    /// The handle of one queue: a notifier, or one Alertmanager of it (`sub`).
    pub fn handle(&self, notifier: &str, sub: Option<&str>) -> Arc<tokio::sync::Notify> {
        let key = match sub {
            Some(sub) => format!("{notifier}\t{sub}"),
            None => notifier.to_owned(),
        };
        // Poisoning needs a panic while the lock is held; nothing here can panic.
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(key).or_default())
    }

    pub fn wake_all(&self) {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        for notify in map.values() {
            notify.notify_one();
        }
    }
}

/// What every notifier task is given.
#[derive(Clone)]
pub struct Shared {
    /// Reads the outbox and the alerts Alertmanager is sent.
    pub store: Store,
    /// Where deliveries are recorded.
    pub recorder: Recorder,
    pub wakes: Arc<Wakes>,
    pub metrics: outbox::NotifyMetrics,
    /// The agent's own alert (its database fails), delivered past the outbox.
    pub agent_alert: watch::Receiver<Option<Event>>,
}

/// Runs one task per notifier (one per Alertmanager URL) and restarts them all when a
/// reload changes the notifiers; unchanged notifiers keep running.
pub struct Notifiers {
    specs: Vec<NotifierSpec>,
    token: tokio_util::sync::CancellationToken,
    parent: tokio_util::sync::CancellationToken,
    tracker: tokio_util::task::TaskTracker,
    shared: Shared,
    client: reqwest::Client,
}

impl Notifiers {
    pub fn start(
        specs: &[NotifierSpec],
        shared: Shared,
        tracker: tokio_util::task::TaskTracker,
        parent: tokio_util::sync::CancellationToken,
    ) -> Result<Notifiers, reqwest::Error> {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(rustls::ClientConfig::clone(&crate::tls::system_tls_config()))
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        let mut notifiers = Notifiers {
            specs: Vec::new(),
            token: parent.child_token(),
            parent,
            tracker,
            shared,
            client,
        };
        notifiers.apply(specs);
        Ok(notifiers)
    }

    pub fn apply(&mut self, specs: &[NotifierSpec]) {
        if self.specs == specs && !self.token.is_cancelled() {
            return;
        }
        self.token.cancel();
        self.token = self.parent.child_token();
        self.specs = specs.to_vec();
        for spec in specs {
            match &spec.kind {
                NotifierKind::Alertmanager(am) => {
                    for url in &am.urls {
                        let sender = alertmanager::AmSender {
                            notifier: spec.name.clone(),
                            url: url.clone(),
                            spec: am.clone(),
                            timeout: spec.timeout,
                            client: self.client.clone(),
                            wake: self.shared.wakes.handle(&spec.name, Some(url.as_str())),
                            shared: self.shared.clone(),
                        };
                        self.tracker.spawn(sender.run(self.token.clone()));
                    }
                }
                _ => match outbox::Worker::new(
                    spec.clone(),
                    self.client.clone(),
                    self.shared.clone(),
                ) {
                    Ok(Some(worker)) => {
                        self.tracker.spawn(worker.run(self.token.clone()));
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::error!(notifier = %spec.name, %error, "cannot start notifier")
                    }
                },
            }
            tracing::info!(notifier = %spec.name, kind = spec.kind.as_str(), "notifier started");
            // Secrets print as `***` and URLs without their user, password and query.
            tracing::debug!(notifier = %spec.name, settings = ?spec.kind, "notifier settings");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_the_value_the_environment_or_a_file() {
        std::env::set_var("IOCWATCH_TEST_SECRET_A", "s3cret");
        assert_eq!(
            secret(Some("Bearer ${IOCWATCH_TEST_SECRET_A}"), None, "token")
                .as_ref()
                .map(Secret::expose),
            Ok("Bearer s3cret")
        );
        assert_eq!(
            secret(Some("${IOCWATCH_TEST_UNSET_VAR}"), None, "token"),
            Err("environment variable IOCWATCH_TEST_UNSET_VAR is not set".into())
        );
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("token");
        std::fs::write(&path, "from-file\n").expect("write");
        let path = path.to_string_lossy().into_owned();
        assert_eq!(
            secret(None, Some(&path), "token")
                .as_ref()
                .map(Secret::expose),
            Ok("from-file")
        );
        assert!(secret(Some("a"), Some(&path), "token").is_err());
        assert!(secret(None, None, "token").is_err());
        // The secret itself written where a file name belongs is not echoed back.
        let mistaken =
            secret(None, Some("hunter2-the-password"), "password").expect_err("no such file");
        assert!(!mistaken.contains("hunter2"), "{mistaken}");
        assert!(mistaken.contains("not the secret itself"), "{mistaken}");
        let missing = secret(None, Some("/etc/iocwatch/missing"), "password").expect_err("missing");
        assert!(missing.contains("/etc/iocwatch/missing"), "{missing}");
    }
}
