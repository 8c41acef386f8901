//! Telegram bot (`sendMessage`). Off unless configured: Telegram was ordered blocked in
//! Vietnam in 2025, so it is for sites that can still reach it.

use serde::Deserialize;

use super::outbox::DeliveryError;
use super::text::Message;
use super::{append_path, parse_url, secret};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    #[serde(default)]
    pub bot_token: Option<String>,
    #[serde(default)]
    pub bot_token_file: Option<String>,
    pub chat_id: String,
    #[serde(default = "default_api")]
    pub api_url: String,
}

fn default_api() -> String {
    "https://api.telegram.org".into()
}

#[derive(Debug, Clone, PartialEq)]
pub struct TelegramSpec {
    pub send_url: reqwest::Url,
    pub chat_id: String,
}

impl TelegramConfig {
    pub fn build(self) -> Result<TelegramSpec, String> {
        let token = secret(
            self.bot_token.as_deref(),
            self.bot_token_file.as_deref(),
            "bot_token",
        )?;
        let base = parse_url(&self.api_url, "telegram api_url")?;
        let send_url = append_path(&base, &[&format!("bot{token}"), "sendMessage"])?;
        Ok(TelegramSpec {
            send_url,
            chat_id: self.chat_id,
        })
    }
}

#[derive(Deserialize)]
struct Reply {
    ok: bool,
    #[serde(default)]
    description: Option<String>,
}

pub async fn deliver(
    spec: &TelegramSpec,
    client: &reqwest::Client,
    message: &Message,
) -> Result<(), DeliveryError> {
    // Telegram's limit is 4096 characters.
    let text: String = message.text().chars().take(4096).collect();
    let response = client
        .post(spec.send_url.clone())
        .json(&serde_json::json!({"chat_id": spec.chat_id, "text": text}))
        .send()
        .await
        .map_err(DeliveryError::retry)?;
    let status = response.status();
    DeliveryError::from_status(status)?;
    let reply: Reply = response.json().await.map_err(DeliveryError::retry)?;
    if reply.ok {
        Ok(())
    } else {
        Err(DeliveryError::Permanent(
            reply.description.unwrap_or_else(|| "ok: false".into()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_with_a_colon_stays_in_the_path() {
        let spec = TelegramConfig {
            bot_token: Some("123456:ABC-def".into()),
            bot_token_file: None,
            chat_id: "-1001".into(),
            api_url: "https://api.telegram.org".into(),
        }
        .build()
        .expect("valid");
        assert_eq!(
            spec.send_url.as_str(),
            "https://api.telegram.org/bot123456:ABC-def/sendMessage"
        );
    }
}
