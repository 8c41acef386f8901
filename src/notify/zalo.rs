//! Zalo Official Account messages, the channel Vietnamese on-call staff actually read: a
//! customer-service message to a follower, with an access token that expires and is
//! refreshed from a refresh token. Zalo refresh tokens are single-use, so the new one is
//! written to the database before it is used. (The Zalo Bot Platform has Telegram's API
//! and lives in `bot.rs`.)

use serde::Deserialize;
use tokio::sync::Mutex;

use super::bot::truncate;
use super::outbox::DeliveryError;
use super::Shared;
use super::{append_path, parse_url, secret};
use crate::model::text::Message;
use crate::model::{Secret, Write};

/// The longest message text Zalo takes, in characters.
const MAX_TEXT: usize = 2000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZaloOaConfig {
    pub app_id: String,
    #[serde(default)]
    pub secret_key: Option<String>,
    #[serde(default)]
    pub secret_key_file: Option<String>,
    /// The first refresh token; later ones are kept in the database.
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub refresh_token_file: Option<String>,
    /// The follower who receives the messages.
    pub user_id: String,
    #[serde(default = "default_oa_api")]
    pub api_url: String,
    #[serde(default = "default_oauth")]
    pub oauth_url: String,
}

fn default_oa_api() -> String {
    "https://openapi.zalo.me".into()
}

fn default_oauth() -> String {
    "https://oauth.zaloapp.com".into()
}

#[derive(Debug, Clone, PartialEq)]
pub struct ZaloOaSpec {
    pub app_id: String,
    pub secret_key: Secret,
    pub refresh_token: Secret,
    pub user_id: String,
    pub message_url: reqwest::Url,
    pub token_url: reqwest::Url,
}

impl ZaloOaConfig {
    pub fn build(self) -> Result<ZaloOaSpec, String> {
        let secret_key = secret(
            self.secret_key.as_deref(),
            self.secret_key_file.as_deref(),
            "secret_key",
        )?;
        let refresh_token = secret(
            self.refresh_token.as_deref(),
            self.refresh_token_file.as_deref(),
            "refresh_token",
        )?;
        let api = parse_url(&self.api_url, "zalo_oa api_url")?;
        let oauth = parse_url(&self.oauth_url, "zalo_oa oauth_url")?;
        Ok(ZaloOaSpec {
            app_id: self.app_id,
            secret_key,
            refresh_token,
            user_id: self.user_id,
            message_url: append_path(&api, &["v3.0", "oa", "message", "cs"])?,
            token_url: append_path(&oauth, &["v4", "oa", "access_token"])?,
        })
    }
}

/// The Official Account sender: holds the current access token, and the latest refresh
/// token in case the database has not taken it yet.
pub struct OaSender {
    spec: ZaloOaSpec,
    kv_key: String,
    access_token: Mutex<Option<String>>,
    refresh_token: Mutex<Option<String>>,
}

#[derive(Deserialize)]
struct TokenReply {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    error: Option<i64>,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct OaReply {
    error: i64,
    #[serde(default)]
    message: Option<String>,
}

/// Zalo's "access token invalid or expired".
const TOKEN_INVALID: [i64; 2] = [-216, -124];

impl OaSender {
    pub fn new(spec: ZaloOaSpec, notifier: &str) -> OaSender {
        OaSender {
            kv_key: format!("zalo_oa/{notifier}/{}/refresh_token", spec.app_id),
            spec,
            access_token: Mutex::new(None),
            refresh_token: Mutex::new(None),
        }
    }

    async fn refresh(
        &self,
        client: &reqwest::Client,
        shared: &Shared,
    ) -> Result<String, DeliveryError> {
        let mut latest = self.refresh_token.lock().await;
        let refresh_token = match latest.clone() {
            Some(token) => token,
            None => shared
                .store
                .kv(&self.kv_key)
                .await
                .map_err(|e| DeliveryError::Retry(e.to_string()))?
                .unwrap_or_else(|| self.spec.refresh_token.expose().to_owned()),
        };
        let response = client
            .post(self.spec.token_url.clone())
            .header("secret_key", self.spec.secret_key.expose())
            .form(&[
                ("refresh_token", refresh_token.as_str()),
                ("app_id", self.spec.app_id.as_str()),
                ("grant_type", "refresh_token"),
            ])
            .send()
            .await
            .map_err(DeliveryError::http)?;
        DeliveryError::from_status(response.status())?;
        let reply: TokenReply = response.json().await.map_err(DeliveryError::http)?;
        match (reply.access_token, reply.refresh_token) {
            (Some(access), Some(refresh)) => {
                // Single-use: the old refresh token is dead from now on. Kept in memory at
                // once, and on disk as soon as the journal can commit it.
                *latest = Some(refresh.clone());
                let stored = shared
                    .recorder
                    .record_and_wait(
                        vec![Write::Kv {
                            key: self.kv_key.clone(),
                            value: refresh,
                        }],
                        std::time::Duration::from_secs(5),
                    )
                    .await;
                if !stored {
                    tracing::warn!("the rotated Zalo refresh token is not on disk yet; kept in memory until it is");
                }
                Ok(access)
            }
            _ => Err(DeliveryError::Retry(format!(
                "zalo token refresh failed: {} {}",
                reply.error.unwrap_or(0),
                reply.error_description.unwrap_or_default()
            ))),
        }
    }

    pub async fn deliver(
        &self,
        client: &reqwest::Client,
        shared: &Shared,
        message: &Message,
    ) -> Result<(), DeliveryError> {
        let mut token = self.access_token.lock().await;
        for attempt in 0..2 {
            let access = match token.clone() {
                Some(t) => t,
                None => {
                    let fresh = self.refresh(client, shared).await?;
                    *token = Some(fresh.clone());
                    fresh
                }
            };
            let response = client
                .post(self.spec.message_url.clone())
                .header("access_token", &access)
                .json(&serde_json::json!({
                    "recipient": {"user_id": self.spec.user_id},
                    "message": {"text": truncate(&message.text(), MAX_TEXT)},
                }))
                .send()
                .await
                .map_err(DeliveryError::http)?;
            DeliveryError::from_status(response.status())?;
            let reply: OaReply = response.json().await.map_err(DeliveryError::http)?;
            if reply.error == 0 {
                return Ok(());
            }
            if TOKEN_INVALID.contains(&reply.error) && attempt == 0 {
                *token = None;
                continue;
            }
            return Err(DeliveryError::Retry(format!(
                "zalo error {}: {}",
                reply.error,
                reply.message.unwrap_or_default()
            )));
        }
        Err(DeliveryError::Retry(
            "zalo access token refused twice".into(),
        ))
    }
}
