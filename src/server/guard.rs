//! What every request passes before a handler: the Host a loopback listener answers to
//! (against DNS rebinding), basic auth from the web config, and on the way out the security
//! headers and the web config's own. Admin actions (reload, baseline acceptance) pass
//! `admin` too: enabled by a flag or an authenticated user, and never from another site.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::listen::Connection;
use super::ServerState;

/// Whether the request came with a user the web config knows (basic auth).
#[derive(Debug, Clone, Copy)]
pub struct Authenticated(pub bool);

/// The default policy of everything but the status page: nothing may load, nothing may
/// frame it.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

pub async fn guard(State(state): State<ServerState>, mut request: Request, next: Next) -> Response {
    let config = state.web.current();
    let on_loopback = request
        .extensions()
        .get::<Connection>()
        .is_some_and(|c| c.local.ip().is_loopback());
    if on_loopback && !host_served(request.headers(), &state.hosts) {
        return (
            StatusCode::FORBIDDEN,
            "this agent listens on loopback and answers only to localhost, a loopback address or its external_url host\n",
        )
            .into_response();
    }
    let authenticated = if config.requires_auth() {
        if !state
            .web
            .authorized(&config, request.headers().get(header::AUTHORIZATION))
            .await
        {
            let mut response = (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
            return response;
        }
        true
    } else {
        false
    };
    request
        .extensions_mut()
        .insert(Authenticated(authenticated));
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CONTENT_SECURITY_POLICY, API_CSP),
    ] {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    for (name, value) in &config.headers {
        headers.insert(name.clone(), value.clone());
    }
    response
}

/// The host name of a `Host` header, without its port.
fn host_name(value: &str) -> &str {
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    value.rsplit_once(':').map_or(value, |(host, _)| host)
}

fn host_served(headers: &HeaderMap, extra: &[String]) -> bool {
    // HTTP/1.0 may send no Host; a browser always does, and rebinding needs one.
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return true;
    };
    let name = host_name(host).to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
        || extra.contains(&name)
}

/// Checks an admin request: `enabled` is its flag (`--web.enable-lifecycle`,
/// `--web.enable-admin-api`), or else the request must be authenticated. A request a web
/// page could make from another site is refused: it must not say it is cross-site
/// (`Sec-Fetch-Site`), its `Origin` must be this host, and it must not be a "simple" request
/// (a custom `X-Requested-By` header or a JSON body, which a page cannot send elsewhere
/// without this agent's consent).
/// `Err` holds why, for a 403.
pub fn admin(
    headers: &HeaderMap,
    enabled: bool,
    authenticated: Authenticated,
    flag: &str,
) -> Result<(), String> {
    let refuse = |message: String| Err(message);
    if !enabled && !authenticated.0 {
        return refuse(format!(
            "this action is off: start the agent with {flag}, or require users in its web config\n"
        ));
    }
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" && site != "none" {
            return refuse(format!("refused: a {site} request from a web page\n"));
        }
    }
    if let Some(origin) = text(header::ORIGIN) {
        let origin_host = origin
            .split_once("://")
            .map_or(origin, |(_, rest)| rest)
            .trim_end_matches('/');
        if Some(origin_host) != text(header::HOST) {
            return refuse("refused: a request from another origin\n".to_owned());
        }
    }
    let json = text(header::CONTENT_TYPE).is_some_and(|t| t.starts_with("application/json"));
    if !json && !headers.contains_key("x-requested-by") {
        return refuse(
            "admin requests carry the header X-Requested-By (any value) or a JSON body, which a web page on another site cannot send; `iocwatch reload` and `iocwatch baseline accept` do\n"
                .to_owned(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn loopback_listeners_answer_only_to_loopback_names() {
        let extra = vec!["ioc.laocai.gov.vn".to_owned()];
        for ok in [
            "localhost:10090",
            "127.0.0.1:10090",
            "127.15.0.3",
            "[::1]:10090",
            "app.localhost",
            "IOC.laocai.gov.vn",
        ] {
            assert!(host_served(&headers(&[("host", ok)]), &extra), "{ok}");
        }
        for bad in ["evil.example:10090", "10.0.0.1", "localhost.evil.example"] {
            assert!(!host_served(&headers(&[("host", bad)]), &extra), "{bad}");
        }
    }

    #[test]
    fn admin_requests_need_a_flag_or_a_user_and_must_not_come_from_another_site() {
        let ok = [("host", "127.0.0.1:10090"), ("x-requested-by", "cli")];
        assert!(admin(&headers(&ok), true, Authenticated(false), "--x").is_ok());
        assert!(admin(&headers(&ok), false, Authenticated(true), "--x").is_ok());
        assert!(admin(&headers(&ok), false, Authenticated(false), "--x").is_err());
        let json = [("host", "h"), ("content-type", "application/json")];
        assert!(admin(&headers(&json), true, Authenticated(false), "--x").is_ok());
        let refused: [&[(&str, &str)]; 4] = [
            &[("host", "h")],
            &[("host", "h"), ("content-type", "text/plain")],
            &[
                ("host", "h"),
                ("x-requested-by", "x"),
                ("sec-fetch-site", "cross-site"),
            ],
            &[
                ("host", "h"),
                ("x-requested-by", "x"),
                ("origin", "http://evil.example"),
            ],
        ];
        for h in refused {
            assert!(
                admin(&headers(h), true, Authenticated(true), "--x").is_err(),
                "{h:?}"
            );
        }
        let same = [
            ("host", "h:1"),
            ("origin", "http://h:1"),
            ("x-requested-by", "x"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert!(admin(&headers(&same), true, Authenticated(false), "--x").is_ok());
    }
}
