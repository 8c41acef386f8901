//! Chat bots with Telegram's `sendMessage` shape: Telegram itself, and the Zalo Bot
//! Platform, which copied it (`POST {api}/bot{token}/sendMessage` with `chat_id` and
//! `text`, answered `{"ok": true}`). Telegram is off unless configured: it was ordered
//! blocked in Vietnam in 2025, so it is for sites that can still reach it.

use serde::Deserialize;

use super::outbox::DeliveryError;
use super::{append_path, parse_url, secret};
use crate::model::text::Message;
use crate::model::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Telegram,
    Zalo,
}

impl Platform {
    fn default_api(self) -> &'static str {
        match self {
            Platform::Telegram => "https://api.telegram.org",
            Platform::Zalo => "https://bot-api.zapps.me",
        }
    }

    /// The longest `text` the platform takes, in characters.
    fn max_text(self) -> usize {
        match self {
            Platform::Telegram => 4096,
            Platform::Zalo => 2000,
        }
    }

    fn key(self) -> &'static str {
        match self {
            Platform::Telegram => "telegram",
            Platform::Zalo => "zalo_bot",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotConfig {
    #[serde(default)]
    pub bot_token: Option<String>,
    #[serde(default)]
    pub bot_token_file: Option<String>,
    pub chat_id: String,
    /// The platform's API by default; a local server in tests.
    #[serde(default)]
    pub api_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BotSpec {
    /// The API's base URL; the token joins it only in the request.
    pub api: reqwest::Url,
    pub token: Secret,
    pub chat_id: String,
    pub max_text: usize,
}

impl BotSpec {
    /// `{api}/bot{token}/sendMessage`: the URL holds the token, so it is built for the
    /// request and never kept or printed.
    fn send_url(&self) -> Result<reqwest::Url, String> {
        append_path(
            &self.api,
            &[&format!("bot{}", self.token.expose()), "sendMessage"],
        )
    }
}

impl BotConfig {
    pub fn build(self, platform: Platform) -> Result<BotSpec, String> {
        let token = secret(
            self.bot_token.as_deref(),
            self.bot_token_file.as_deref(),
            "bot_token",
        )?;
        let api = self.api_url.as_deref().unwrap_or(platform.default_api());
        let api = parse_url(api, &format!("{} api_url", platform.key()))?;
        let spec = BotSpec {
            api,
            token,
            chat_id: self.chat_id,
            max_text: platform.max_text(),
        };
        spec.send_url()?;
        Ok(spec)
    }
}

/// Cuts a text to `max` characters (not bytes: Vietnamese letters are 2–3 bytes).
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[derive(Deserialize)]
struct Reply {
    ok: bool,
    #[serde(default)]
    description: Option<String>,
}

pub async fn deliver(
    spec: &BotSpec,
    client: &reqwest::Client,
    message: &Message,
) -> Result<(), DeliveryError> {
    let url = spec.send_url().map_err(DeliveryError::Permanent)?;
    let response = client
        .post(url)
        .json(&serde_json::json!({
            "chat_id": spec.chat_id,
            "text": truncate(&message.text(), spec.max_text),
        }))
        .send()
        .await
        .map_err(DeliveryError::http)?;
    DeliveryError::from_status(response.status())?;
    let reply: Reply = response.json().await.map_err(DeliveryError::http)?;
    if reply.ok {
        Ok(())
    } else {
        // The API's own words, without the token should it quote our request.
        let said = reply.description.unwrap_or_else(|| "ok: false".into());
        Err(DeliveryError::Permanent(
            said.replace(spec.token.expose(), "***"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_with_a_colon_stays_in_the_path() {
        let spec = BotConfig {
            bot_token: Some("123456:ABC-def".into()),
            bot_token_file: None,
            chat_id: "-1001".into(),
            api_url: None,
        }
        .build(Platform::Telegram)
        .expect("valid");
        assert_eq!(
            spec.send_url().expect("url").as_str(),
            "https://api.telegram.org/bot123456:ABC-def/sendMessage"
        );
        assert!(!format!("{spec:?}").contains("ABC-def"), "{spec:?}");
        assert_eq!(spec.max_text, 4096);
    }

    #[test]
    fn texts_are_cut_by_characters_not_bytes() {
        let long = "Mất kết nối ".repeat(300);
        let cut = truncate(&long, 2000);
        assert_eq!(cut.chars().count(), 2000);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("ngắn", 2000), "ngắn");
    }
}
