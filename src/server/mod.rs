//! The HTTP surface: `/metrics`, `/-/healthy`, `/-/ready`, `POST /-/reload`, the status page
//! at `/` and `/api/v1/status`. It reads shared snapshots and sends reload requests; it owns
//! no state of its own. Every request passes `guard` (web config: TLS, basic auth, headers;
//! the Host a loopback listener answers to); admin actions pass `guard::admin` too.

mod guard;
mod listen;
mod page;
pub mod web_config;

use std::sync::Arc;

use axum::extract::{Extension, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::alert::AlertsSnapshot;
use crate::journal::StoreHealth;
use crate::state::StateMsg;
use crate::status::Status;
use crate::store::Store;
use tokio_util::sync::CancellationToken;

use guard::Authenticated;
pub use web_config::WebConfigFile;

/// A reload asked for over HTTP; the answer is the error text of a refused config.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

#[derive(Clone)]
pub struct ServerState {
    pub exposition: crate::metrics::Exposition,
    /// Cancelled when the agent begins to shut down: from then on it is no longer ready.
    pub shutdown: CancellationToken,
    pub reload: mpsc::Sender<ReloadRequest>,
    /// Baseline acceptance goes to the state, which owns the baselines.
    pub state: mpsc::Sender<StateMsg>,
    pub telemetry_path: String,
    pub status: watch::Receiver<Arc<Status>>,
    pub alerts: watch::Receiver<Arc<AlertsSnapshot>>,
    pub store_health: watch::Receiver<StoreHealth>,
    /// For the incident history; read-only here.
    pub store: Store,
    /// TLS, users and headers (`--web.config.file`).
    pub web: Arc<WebConfigFile>,
    /// `--web.enable-lifecycle`: reload over HTTP without a user.
    pub lifecycle: bool,
    /// `--web.enable-admin-api`: baseline acceptance over HTTP without a user.
    pub admin_api: bool,
    /// Host names besides loopback ones that a loopback listener answers to (the
    /// external URL's).
    pub hosts: Vec<String>,
}

pub fn router(state: ServerState) -> Router {
    let telemetry = state.telemetry_path.clone();
    Router::new()
        .route("/", get(status_page))
        .route("/api/v1/status", get(status_json))
        .route("/api/v1/alerts", get(alerts_json))
        .route("/api/v1/incidents", get(incidents_json))
        .route("/api/v1/report", get(report))
        .route("/api/v1/baselines/accept", post(accept_baseline))
        // Prometheus asks for gzip. The fastest level still shrinks the text about
        // twentyfold and takes a third of the default's time: at 100,000 checks (300 MB of
        // text) a scrape of 0.3-0.4 s against 1.0-1.2 s.
        .route(
            &telemetry,
            get(metrics).layer(
                tower_http::compression::CompressionLayer::new()
                    .quality(tower_http::CompressionLevel::Fastest),
            ),
        )
        .route("/-/healthy", get(healthy).head(healthy))
        .route("/-/ready", get(ready).head(ready))
        .route("/-/reload", post(reload).put(reload))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .with_state(state)
}

/// Serves on every listener until `shutdown`.
pub async fn serve(listeners: Vec<TcpListener>, state: ServerState, shutdown: CancellationToken) {
    let web = Arc::clone(&state.web);
    let app = router(state);
    let servers = listeners
        .into_iter()
        .map(|listener| listen::serve(listener, app.clone(), Arc::clone(&web), shutdown.clone()));
    futures_util::future::join_all(servers).await;
}

/// Streams the exposition as it is written, a chunk at a time, on a blocking thread: the
/// scrape of 100,000 checks never sits whole in memory, and writing it does not hold up the
/// runtime's workers. A scraper that goes away stops the writing.
async fn metrics(State(state): State<ServerState>) -> Response {
    const CHUNK: usize = 256 * 1024;
    let (chunks, mut rx) = mpsc::channel::<axum::body::Bytes>(2);
    let exposition = state.exposition.clone();
    tokio::task::spawn_blocking(move || {
        exposition.write(CHUNK, |text| match chunks.blocking_send(text.into()) {
            Ok(()) => std::ops::ControlFlow::Continue(()),
            Err(_) => std::ops::ControlFlow::Break(()),
        });
    });
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|chunk| chunk.map(Ok::<_, std::convert::Infallible>))
    });
    let body = axum::body::Body::from_stream(stream);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn healthy() -> &'static str {
    "Healthy.\n"
}

async fn ready(State(state): State<ServerState>) -> Response {
    // Serving means the config is loaded and every check scheduled (the server starts after
    // both); a draining agent says it is not ready so that load balancers move on, and an
    // agent whose database fails says so (its alerts wait for the database).
    if state.shutdown.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "Not ready: shutting down.\n",
        )
            .into_response();
    }
    let health = state.store_health.borrow().clone();
    match health.failing {
        None => (StatusCode::OK, "Ready.\n").into_response(),
        Some((since, error)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "Not ready: the database fails since {} ({error}); {} writes wait for it.\n",
                crate::model::rfc3339(since),
                health.pending_writes
            ),
        )
            .into_response(),
    }
}

async fn reload(
    State(state): State<ServerState>,
    Extension(authenticated): Extension<Authenticated>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = guard::admin(
        &headers,
        state.lifecycle,
        authenticated,
        "--web.enable-lifecycle",
    ) {
        return (StatusCode::FORBIDDEN, refused).into_response();
    }
    let (reply, answer) = oneshot::channel();
    if state.reload.send(reply).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match answer.await {
        Ok(Ok(())) => (StatusCode::OK, "config reloaded\n").into_response(),
        // The errors name files and values: only a known user sees them here; the log
        // and `iocwatch check-config` have them for everyone else.
        Ok(Err(errors)) if authenticated.0 => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("config refused, the running one is kept:\n{errors}\n"),
        )
            .into_response(),
        Ok(Err(_)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "config refused, the running one is kept; the agent's log and `iocwatch check-config` say why\n",
        )
            .into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

#[derive(serde::Deserialize)]
struct AcceptQuery {
    target: String,
}

async fn accept_baseline(
    State(state): State<ServerState>,
    Extension(authenticated): Extension<Authenticated>,
    headers: HeaderMap,
    Query(query): Query<AcceptQuery>,
) -> Response {
    if let Err(refused) = guard::admin(
        &headers,
        state.admin_api,
        authenticated,
        "--web.enable-admin-api",
    ) {
        return (StatusCode::FORBIDDEN, refused).into_response();
    }
    let (reply, answer) = oneshot::channel();
    if state
        .state
        .send(StateMsg::AcceptBaselines(query.target.clone(), reply))
        .await
        .is_err()
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match answer.await {
        Ok(Some(checks)) => {
            axum::Json(serde_json::json!({"target": query.target, "accepted": checks}))
                .into_response()
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            format!("unknown target {:?}\n", query.target),
        )
            .into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

#[derive(serde::Deserialize)]
struct PageQuery {
    lang: Option<String>,
}

async fn status_page(State(state): State<ServerState>, Query(query): Query<PageQuery>) -> Response {
    let snapshot = Arc::clone(&state.status.borrow());
    let alerts = Arc::clone(&state.alerts.borrow());
    let english = query.lang.as_deref() == Some("en");
    let mut response = Html(page::render(
        &snapshot,
        &alerts,
        english,
        &state.telemetry_path,
    ))
    .into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, page::csp());
    response
}

/// Alerts that are pending, firing, suppressed or in maintenance, with root cause and reach.
async fn alerts_json(State(state): State<ServerState>) -> Response {
    let snapshot = Arc::clone(&state.alerts.borrow());
    axum::Json(&*snapshot).into_response()
}

#[derive(serde::Deserialize)]
struct HistoryQuery {
    /// How far back, in days (default 90).
    #[serde(default)]
    days: Option<u32>,
}

/// Incident history (start, end, root cause, reach, maintenance) and the maintenance
/// periods, newest first, for reports that leave maintenance out.
async fn incidents_json(
    State(state): State<ServerState>,
    Query(query): Query<HistoryQuery>,
) -> Response {
    let days = i64::from(query.days.unwrap_or(90));
    let since = crate::model::unix_ms(std::time::SystemTime::now()) - days * 86_400_000;
    let read = async {
        Ok::<_, crate::store::StoreError>((
            state.store.incidents(since, 10_000).await?,
            state.store.maintenance_periods().await?,
        ))
    };
    let time = |ms: i64| crate::model::rfc3339(crate::model::from_unix_ms(ms));
    match read.await {
        Ok((incidents, periods)) => {
            let incidents: Vec<serde_json::Value> = incidents
                .iter()
                .map(|i| {
                    serde_json::json!({
                        "id": i.id,
                        "target": i.target,
                        "alertname": i.alertname,
                        "severity": i.severity,
                        "area": i.area,
                        "started_at": time(i.started_at),
                        "ended_at": i.ended_at.map(time),
                        "root_cause": i.root_cause,
                        "affected_targets": i.affected,
                        "affected_areas": serde_json::from_str::<serde_json::Value>(&i.affected_areas)
                            .unwrap_or_default(),
                        "notified": i.notified,
                        "maintenance": i.maintenance,
                        "flapping": i.flapping,
                    })
                })
                .collect();
            let maintenance: Vec<serde_json::Value> = periods
                .iter()
                .filter(|p| p.ended_at.is_none_or(|e| e >= since))
                .map(|p| {
                    serde_json::json!({"window": p.window, "started_at": time(p.started_at), "ended_at": p.ended_at.map(time)})
                })
                .collect();
            axum::Json(serde_json::json!({"incidents": incidents, "maintenance": maintenance}))
                .into_response()
        }
        Err(error) => {
            tracing::error!(%error, "cannot read incident history");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read incident history\n",
            )
                .into_response()
        }
    }
}

#[derive(serde::Deserialize)]
struct ReportQuery {
    /// Defaults to the last 30 days, today included.
    from: Option<String>,
    to: Option<String>,
    by: Option<crate::report::By>,
    area: Option<String>,
    format: Option<crate::report::Format>,
    lang: Option<crate::model::Language>,
    tz: Option<String>,
}

/// `iocwatch report` over HTTP: the same figures from the same database, HTML by default.
async fn report(State(state): State<ServerState>, Query(query): Query<ReportQuery>) -> Response {
    use crate::report::{self, Format};
    let bad = |message: String| (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response();
    let zone = match query.tz.as_deref().map(str::parse::<chrono_tz::Tz>) {
        None => crate::model::DEFAULT_TIME_ZONE,
        Some(Ok(zone)) => zone,
        Some(Err(_)) => {
            return bad("unknown time zone: expected an IANA name such as Asia/Ho_Chi_Minh".into())
        }
    };
    let now = crate::model::unix_ms(std::time::SystemTime::now());
    let today = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
        .with_timezone(&zone)
        .date_naive();
    let from = query
        .from
        .unwrap_or_else(|| (today - chrono::Duration::days(29)).to_string());
    let to = query.to.unwrap_or_else(|| today.to_string());
    let (from, to) = match report::parse_period(&from, &to, zone) {
        Ok(period) => period,
        Err(e) => return bad(e.to_string()),
    };
    let format = query.format.unwrap_or(Format::Html);
    let by = query.by.unwrap_or(report::By::Area);
    let request = report::Request {
        from,
        to,
        by,
        area: query.area,
        language: query.lang.unwrap_or_default(),
        time_zone: zone,
        now,
    };
    let history = match state.store.history(from, to).await {
        Ok(history) => history,
        Err(error) => {
            tracing::error!(%error, "cannot read the history for a report");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read the history\n",
            )
                .into_response();
        }
    };
    let made = tokio::task::spawn_blocking(move || {
        report::build(&history, &request, &format.groupings(by))
            .and_then(|r| report::render(&r, format))
    })
    .await;
    match made {
        Ok(Ok(bytes)) => {
            let name = format!(
                "attachment; filename=\"iocwatch-report.{}\"",
                format.extension()
            );
            let mut response =
                ([(header::CONTENT_TYPE, format.content_type())], bytes).into_response();
            if matches!(format, Format::Xlsx | Format::Csv) {
                if let Ok(value) = header::HeaderValue::from_str(&name) {
                    response
                        .headers_mut()
                        .insert(header::CONTENT_DISPOSITION, value);
                }
            }
            response
        }
        Ok(Err(e @ report::ReportError::UnknownArea(_))) => bad(e.to_string()),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot make a report");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()
        }
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the report task failed\n",
        )
            .into_response(),
    }
}

async fn status_json(State(state): State<ServerState>) -> Response {
    let snapshot = Arc::clone(&state.status.borrow());
    axum::Json(&*snapshot).into_response()
}
