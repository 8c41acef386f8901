//! Generic webhook: POST JSON to a URL. The body is the event itself, or a template (any
//! YAML value) whose strings may hold `{{field}}` placeholders, so SMS gateways and chat
//! bridges take what they expect. Every request carries `Idempotency-Key: <event id>`, the
//! same across retries and restarts, for receivers to deduplicate.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::outbox::DeliveryError;
use super::{expand_env, parse_url, secret};
use crate::model::text::Message;
use crate::model::{redacted, Event, Secret};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// Extra headers; values may use `${VAR}`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub bearer_token_file: Option<String>,
    /// A JSON body template; the event as JSON when not set.
    #[serde(default)]
    pub body: Option<Value>,
}

#[derive(Clone, PartialEq)]
pub struct WebhookSpec {
    /// May hold a user and password, or a token in its query: printed only redacted.
    pub url: reqwest::Url,
    /// Header values often carry a token: all kept as secrets.
    pub headers: Vec<(String, Secret)>,
    pub body: Option<Value>,
}

impl std::fmt::Debug for WebhookSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSpec")
            .field("url", &redacted(self.url.as_str()))
            .field("headers", &self.headers)
            .field("body", &self.body)
            .finish()
    }
}

/// Placeholders a body template may use.
pub const FIELDS: [&str; 16] = [
    "id",
    "status",
    "alertname",
    "severity",
    "target",
    "target_name",
    "check",
    "area",
    "area_name",
    "area_path",
    "started_at",
    "ended_at",
    "affected_targets",
    "title",
    "body",
    "text",
];

impl WebhookConfig {
    pub fn build(self) -> Result<WebhookSpec, String> {
        let url = parse_url(&self.url, "webhook url")?;
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("invalid header name {name:?}"))?;
            headers.push((name.clone(), Secret::new(expand_env(value)?)));
        }
        if self.bearer_token.is_some() || self.bearer_token_file.is_some() {
            let token = secret(
                self.bearer_token.as_deref(),
                self.bearer_token_file.as_deref(),
                "bearer_token",
            )?;
            headers.push((
                "authorization".into(),
                Secret::new(format!("Bearer {}", token.expose())),
            ));
        }
        if let Some(body) = &self.body {
            check_template(body)?;
        }
        Ok(WebhookSpec {
            url,
            headers,
            body: self.body,
        })
    }
}

fn placeholders(text: &str) -> impl Iterator<Item = &str> {
    text.split("{{")
        .skip(1)
        .filter_map(|part| part.split_once("}}").map(|(name, _)| name.trim()))
}

fn check_template(value: &Value) -> Result<(), String> {
    match value {
        Value::String(s) => {
            for name in placeholders(s) {
                if !FIELDS.contains(&name) {
                    return Err(format!(
                        "webhook body: unknown placeholder {{{{{name}}}}}; expected one of {}",
                        FIELDS.join(", ")
                    ));
                }
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(check_template),
        Value::Object(map) => map.values().try_for_each(check_template),
        _ => Ok(()),
    }
}

fn field(event: &Event, message: &Message, name: &str) -> String {
    match name {
        "id" => event.id.clone(),
        "status" => format!("{:?}", event.status).to_lowercase(),
        "alertname" => event.alertname.clone(),
        "severity" => event.severity.as_str().to_owned(),
        "target" => event.target.clone(),
        "target_name" => event
            .target_name
            .clone()
            .unwrap_or_else(|| event.target.clone()),
        "check" => event.check.clone(),
        "area" => event.area.clone(),
        "area_name" => event.area_name().to_owned(),
        "area_path" => event.area_path.join(" › "),
        "started_at" => event.started_at.clone(),
        "ended_at" => event.ended_at.clone().unwrap_or_default(),
        "affected_targets" => event.affected_targets.to_string(),
        "title" => message.title.clone(),
        "body" => message.body.clone(),
        "text" => message.text(),
        _ => String::new(),
    }
}

/// Fills a template: placeholders are replaced inside JSON strings, so whatever the values
/// hold, the body stays valid JSON.
pub fn fill(template: &Value, event: &Event, message: &Message) -> Value {
    match template {
        Value::String(s) => {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find("{{") {
                out.push_str(&rest[..start]);
                match rest[start + 2..].split_once("}}") {
                    Some((name, after)) => {
                        out.push_str(&field(event, message, name.trim()));
                        rest = after;
                    }
                    None => {
                        out.push_str(&rest[start..]);
                        rest = "";
                    }
                }
            }
            out.push_str(rest);
            Value::String(out)
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| fill(v, event, message)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), fill(v, event, message)))
                .collect(),
        ),
        other => other.clone(),
    }
}

pub async fn deliver(
    spec: &WebhookSpec,
    client: &reqwest::Client,
    event: &Event,
    message: &Message,
) -> Result<(), DeliveryError> {
    let body = match &spec.body {
        Some(template) => fill(template, event, message),
        None => {
            let mut value = serde_json::to_value(event).map_err(DeliveryError::permanent)?;
            if let Value::Object(map) = &mut value {
                map.insert("title".into(), Value::String(message.title.clone()));
                map.insert("text".into(), Value::String(message.text()));
            }
            value
        }
    };
    let mut request = client
        .post(spec.url.clone())
        .header("idempotency-key", &event.id)
        .json(&body);
    for (name, value) in &spec.headers {
        request = request.header(name, value.expose());
    }
    let response = request.send().await.map_err(DeliveryError::http)?;
    DeliveryError::from_status(response.status())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::text::{render, tests::event};
    use crate::model::Language;

    #[test]
    fn templates_fill_strings_and_stay_valid_json() {
        let mut e = event();
        e.target_name = Some("Cổng \"chính\"\n".into());
        let message = render(&e, Language::Vi, true);
        let template: Value = serde_json::json!({
            "to": ["0912345678"],
            "message": "{{title}}",
            "meta": {"id": "{{id}}", "n": 3}
        });
        let body = fill(&template, &e, &message);
        assert_eq!(body["meta"]["id"], "7-firing");
        assert_eq!(body["meta"]["n"], 3);
        assert!(body["message"]
            .as_str()
            .expect("string")
            .starts_with("[NGHIEM TRONG] Mat ket noi: Cong \"chinh\"\n"));
        let bad = serde_json::json!({"x": "{{nope}}"});
        assert!(check_template(&bad)
            .expect_err("unknown")
            .contains("unknown placeholder {{nope}}"));
    }
}
