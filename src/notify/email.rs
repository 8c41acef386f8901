//! E-mail over SMTP with lettre: STARTTLS (the default, port 587), implicit TLS (465) or,
//! on a trusted local relay only, plain; optional AUTH; several recipients.

use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message as Mail, Tokio1Executor};
use serde::Deserialize;

use super::outbox::DeliveryError;
use super::secret;
use crate::model::text::Message;
use crate::model::Event;
use crate::model::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    #[default]
    Starttls,
    Tls,
    /// No encryption: only for a relay on the same host or network segment.
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// `host:port` of the SMTP server.
    pub smarthost: String,
    #[serde(default)]
    pub tls: TlsMode,
    /// A CA certificate (PEM) to trust besides the system roots, for an internal mail server.
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<String>,
    pub from: String,
    pub to: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmailSpec {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub ca_pem: Option<Vec<u8>>,
    pub credentials: Option<(String, Secret)>,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
}

impl EmailConfig {
    pub fn build(self) -> Result<EmailSpec, String> {
        let (host, port) = self
            .smarthost
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_owned(), p.parse().ok()?)))
            .ok_or_else(|| format!("smarthost {:?}: expected host:port", self.smarthost))?;
        let from = self
            .from
            .parse::<Mailbox>()
            .map_err(|e| format!("from {:?}: {e}", self.from))?;
        if self.to.is_empty() {
            return Err("email needs at least one address in `to`".into());
        }
        let to = self
            .to
            .iter()
            .map(|a| a.parse::<Mailbox>().map_err(|e| format!("to {a:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let credentials = match &self.username {
            None => None,
            Some(user) => Some((
                user.clone(),
                secret(
                    self.password.as_deref(),
                    self.password_file.as_deref(),
                    "password",
                )?,
            )),
        };
        let ca_pem = match &self.ca_file {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| format!("ca_file {path:?}: {e}"))?;
                Certificate::from_pem(&pem).map_err(|e| format!("ca_file {path:?}: {e}"))?;
                Some(pem)
            }
        };
        Ok(EmailSpec {
            host,
            port,
            tls: self.tls,
            ca_pem,
            credentials,
            from,
            to,
        })
    }
}

pub struct EmailSender {
    spec: EmailSpec,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl EmailSender {
    pub fn new(spec: EmailSpec, timeout: Duration) -> Result<EmailSender, String> {
        let tls = |spec: &EmailSpec| -> Result<TlsParameters, String> {
            let mut builder = TlsParameters::builder(spec.host.clone());
            if let Some(pem) = &spec.ca_pem {
                let cert = Certificate::from_pem(pem).map_err(|e| e.to_string())?;
                builder = builder.add_root_certificate(cert);
            }
            builder.build_rustls().map_err(|e| e.to_string())
        };
        let tls = match spec.tls {
            TlsMode::Starttls => Tls::Required(tls(&spec)?),
            TlsMode::Tls => Tls::Wrapper(tls(&spec)?),
            TlsMode::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&spec.host)
            .port(spec.port)
            .tls(tls)
            .timeout(Some(timeout));
        if let Some((user, password)) = &spec.credentials {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(EmailSender {
            transport: builder.build(),
            spec,
        })
    }

    pub async fn deliver(&self, event: &Event, message: &Message) -> Result<(), DeliveryError> {
        let mut mail = Mail::builder()
            .from(self.spec.from.clone())
            .subject(&message.title)
            // Mail clients thread on it; the same id on a resend lets them show one message.
            .message_id(Some(format!("<{}@iocwatch>", event.id)))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.spec.to {
            mail = mail.to(to.clone());
        }
        let mail = mail
            .body(message.body.clone())
            .map_err(DeliveryError::permanent)?;
        match self.transport.send(mail).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(DeliveryError::Permanent(e.to_string())),
            Err(e) => Err(DeliveryError::Retry(e.to_string())),
        }
    }
}
