//! Wires the pieces together and supervises them: config → catalog → scheduler → state →
//! metrics, the HTTP server, and reload on file change, SIGHUP or `POST /-/reload`.
//! Every task runs on one [`TaskTracker`] and stops on one [`CancellationToken`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use notify::Watcher;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alert::{Engine, IncidentIds};
use crate::catalog::{Catalog, Shard, Watched};
use crate::config::{self, Config, ConfigErrors};
use crate::journal::Journal;
use crate::metrics::{AgentMetrics, Exposition};
use crate::model::Recorder;
use crate::notify::outbox::NotifyMetrics;
use crate::notify::{Notifiers, Shared, Wakes};
use crate::probe::ProbeContext;
use crate::scheduler::Scheduler;
use crate::server::{self, ReloadRequest, ServerState};
use crate::state::{self, Baselines, State, StateMsg};
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    /// Overrides `global.listen` from the config.
    pub listen: Option<Vec<SocketAddr>>,
    pub telemetry_path: String,
    /// How long shutdown waits for rounds in flight.
    pub shutdown_grace: Duration,
    /// Reload when a config file changes.
    pub watch: bool,
    /// Probe only this shard's targets (several agents sharing one config).
    pub shard: Option<Shard>,
    /// Directory of the embedded database; without one, baselines live in memory only.
    pub storage: Option<PathBuf>,
    /// The exporter-toolkit web config file: TLS, basic auth, headers.
    pub web_config: Option<PathBuf>,
    /// `POST /-/reload` without a user (`--web.enable-lifecycle`).
    pub enable_lifecycle: bool,
    /// Baseline acceptance over HTTP without a user (`--web.enable-admin-api`).
    pub enable_admin_api: bool,
    /// Where this agent measures from (`--vantage`): a `vantage` label on every series.
    pub vantage: Option<String>,
}

impl Options {
    pub fn new(config: impl Into<PathBuf>) -> Options {
        Options {
            config: config.into(),
            listen: None,
            telemetry_path: "/metrics".to_owned(),
            shutdown_grace: Duration::from_secs(10),
            watch: true,
            shard: None,
            storage: None,
            web_config: None,
            enable_lifecycle: false,
            enable_admin_api: false,
            vantage: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("invalid config:\n{0}")]
    Config(#[from] ConfigErrors),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot watch config files: {0}")]
    Watch(#[from] notify::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot set up the notifiers' HTTP client: {0}")]
    Http(reqwest::Error),
    #[error("invalid web config: {0}")]
    WebConfig(String),
}

/// A started agent: where it listens, and how to wait for it to stop.
pub struct Agent {
    pub addrs: Vec<SocketAddr>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    grace: Duration,
    journal: tokio::task::JoinHandle<()>,
    journal_stop: CancellationToken,
}

impl Agent {
    /// Waits until `shutdown` is cancelled and every task has stopped (or the grace runs
    /// out); then the journal commits what they left and stops.
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        self.tracker.close();
        let deadline = tokio::time::Instant::now() + self.grace;
        if tokio::time::timeout_at(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = self.tracker.len(),
                "shutdown grace period over; abandoning probes still in flight"
            );
        }
        self.journal_stop.cancel();
        if tokio::time::timeout_at(deadline + Duration::from_secs(5), self.journal)
            .await
            .is_err()
        {
            tracing::error!("the journal did not finish committing before shutdown");
        }
    }
}

/// Loads the config, starts every task and returns once the agent serves.
pub async fn start(options: Options, shutdown: CancellationToken) -> Result<Agent, AppError> {
    let Config {
        catalog,
        notifiers: notifier_specs,
        warnings,
        accepted,
        ..
    } = load(&options.config, options.shard, None)?;
    for warning in &warnings {
        tracing::warn!(%warning, "config");
    }
    let catalog = Arc::new(catalog);
    let web = Arc::new(match &options.web_config {
        Some(path) => server::WebConfigFile::open(path).map_err(AppError::WebConfig)?,
        None => server::WebConfigFile::none(),
    });
    let store = match &options.storage {
        Some(dir) => {
            let store = Store::open(dir).await?;
            tracing::info!(path = %store.path().display(), "embedded database open");
            store
        }
        None => {
            tracing::warn!("no --storage.path: alerts, incidents and the outbox live in memory and are lost on restart");
            Store::in_memory().await?
        }
    };
    // What the record holds from the last run; read once, before anything writes.
    let open_alerts = store.open_alerts().await?;
    let baselines = store.baselines().await?;
    let instance = instance_id();
    tracing::info!(instance, "agent instance");

    let exposition = Exposition::new(options.vantage.as_deref())?;
    let registry = exposition.registry().clone();
    let metrics = Arc::new(AgentMetrics::register(&registry)?);
    mark_reload(&metrics, true);

    let ctx = Arc::new(ProbeContext::new());
    for (family, mode) in [("ip4", ctx.icmp.mode_v4), ("ip6", ctx.icmp.mode_v6)] {
        metrics
            .icmp_socket
            .with_label_values(&[family, mode.as_str()])
            .set(1);
    }
    registry.register(ctx.icmp.collector()?)?;

    let tracker = TaskTracker::new();
    let wakes = Arc::new(Wakes::default());
    let (recorder, inbox) = Recorder::channel();
    let (journal, journal_watch) = Journal::new(
        store.clone(),
        inbox,
        Arc::clone(&wakes),
        &registry,
        &instance,
    )?;
    // The journal outlives the other tasks at shutdown: it stops once it has committed
    // what they handed it (or given up on a store that will not take it).
    let journal_stop = CancellationToken::new();
    let journal_task = tokio::spawn(journal.run(journal_stop.clone()));

    let (results, results_rx) = mpsc::channel(8192);
    let (control_tx, control_rx) = mpsc::channel(16);
    let mut state = State::new(
        &exposition,
        Arc::clone(&catalog),
        Engine::new(IncidentIds::new(&instance)),
        Baselines::new(baselines),
        recorder.clone(),
    )?;
    state.restore(&open_alerts);
    let status = state.subscribe();
    let alerts = state.subscribe_alerts();
    let notifiers = Notifiers::start(
        &notifier_specs,
        Shared {
            store: store.clone(),
            recorder,
            wakes,
            metrics: NotifyMetrics::register(&registry)?,
            agent_alert: journal_watch.agent_alert.clone(),
        },
        tracker.clone(),
        shutdown.clone(),
    )
    .map_err(AppError::Http)?;
    tracker.spawn(state::run(state, results_rx, control_rx, shutdown.clone()));

    let mut scheduler = Scheduler::new(
        ctx,
        results,
        Arc::clone(&metrics),
        tracker.clone(),
        shutdown.clone(),
    );
    scheduler.apply(&catalog);

    let addrs = options
        .listen
        .clone()
        .unwrap_or_else(|| catalog.settings.listen.clone());
    let mut listeners = Vec::new();
    for addr in addrs {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AppError::Listen { addr, source })?;
        listeners.push(listener);
    }
    let bound: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();

    let (reload_tx, reload_rx) = mpsc::channel::<ReloadRequest>(4);
    let server_state = ServerState {
        exposition,
        shutdown: shutdown.clone(),
        reload: reload_tx,
        state: control_tx.clone(),
        telemetry_path: options.telemetry_path.clone(),
        status,
        alerts,
        store_health: journal_watch.health,
        store,
        web,
        lifecycle: options.enable_lifecycle,
        admin_api: options.enable_admin_api,
        hosts: catalog
            .alerting
            .external_url
            .as_deref()
            .and_then(|u| reqwest::Url::parse(u).ok())
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .into_iter()
            .collect(),
    };
    tracker.spawn(server::serve(listeners, server_state, shutdown.clone()));

    let (changed_tx, changed_rx) = mpsc::channel(1);
    let watcher = if options.watch {
        Some(ConfigWatcher::new(changed_tx)?)
    } else {
        None
    };
    for file in &catalog.sources {
        metrics
            .file_reload_successful
            .with_label_values(&[&file.to_string_lossy()])
            .set(1);
    }
    let mut control = Control {
        config: options.config.clone(),
        shard: options.shard,
        accepted: Arc::new(accepted),
        files_shown: catalog.sources.clone(),
        catalog,
        scheduler,
        state: control_tx,
        metrics,
        watcher,
        notifiers,
    };
    control.watch();
    tracker.spawn(control.run(reload_rx, changed_rx, shutdown.clone()));

    for addr in &bound {
        tracing::info!(%addr, path = %options.telemetry_path, "serving metrics");
    }
    Ok(Agent {
        addrs: bound,
        tracker,
        shutdown,
        grace: options.shutdown_grace,
        journal: journal_task,
        journal_stop,
    })
}

/// A random id for this run of the agent: incident ids start with it, so they never
/// repeat across restarts, agents or shards.
fn instance_id() -> String {
    let mut bytes = [0u8; 8];
    if let Err(error) = getrandom::fill(&mut bytes) {
        // Without an OS random source, the clock still differs between runs.
        tracing::warn!(%error, "no random source; the instance id comes from the clock");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos();
        bytes = (nanos as u64).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the agent until `shutdown` is cancelled.
pub async fn run(options: Options, shutdown: CancellationToken) -> Result<(), AppError> {
    start(options, shutdown).await?.wait().await;
    Ok(())
}

/// Loads the config, keeping only this agent's shard of the targets. On a reload (`accepted`:
/// the running config's files) an included file with errors is refused alone.
fn load(
    path: &Path,
    shard: Option<Shard>,
    accepted: Option<&HashMap<PathBuf, Arc<str>>>,
) -> Result<Config, ConfigErrors> {
    let mut config = match accepted {
        Some(accepted) => config::load_isolating(path, accepted)?,
        None => config::load(path)?,
    };
    if let Some(shard) = shard {
        config.catalog = config.catalog.into_shard(shard);
    }
    Ok(config)
}

fn mark_reload(metrics: &AgentMetrics, ok: bool) {
    metrics.reload_successful.set(i64::from(ok));
    metrics
        .reloads
        .with_label_values(&[if ok { "success" } else { "failure" }])
        .inc();
    if ok {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        metrics.reload_success_timestamp.set(now.as_secs_f64());
    }
}

/// Owns the scheduler and the running catalog; the only place a reload happens.
struct Control {
    config: PathBuf,
    shard: Option<Shard>,
    /// The running config's included files as read: what a refused edit falls back on.
    accepted: Arc<HashMap<PathBuf, Arc<str>>>,
    /// Files with an `iocwatch_config_file_last_reload_successful` series.
    files_shown: Vec<PathBuf>,
    catalog: Arc<Catalog>,
    scheduler: Scheduler,
    state: mpsc::Sender<StateMsg>,
    metrics: Arc<AgentMetrics>,
    watcher: Option<ConfigWatcher>,
    notifiers: Notifiers,
}

impl Control {
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<ReloadRequest>,
        mut changed: mpsc::Receiver<()>,
        shutdown: CancellationToken,
    ) {
        let mut hangup = signal_hangup();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                Some(reply) = requests.recv() => {
                    let result = self.reload("api").await;
                    let _ = reply.send(result);
                }
                Some(()) = changed.recv() => {
                    // Editors write a file in several steps; wait for them to finish.
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    while changed.try_recv().is_ok() {}
                    let _ = self.reload("file change").await;
                }
                Some(()) = recv_signal(&mut hangup) => {
                    let _ = self.reload("SIGHUP").await;
                }
            }
        }
    }

    /// Loads the config again; applies it whole, or keeps the running one.
    async fn reload(&mut self, cause: &str) -> Result<(), String> {
        let (path, shard) = (self.config.clone(), self.shard);
        let accepted = Arc::clone(&self.accepted);
        let loaded = tokio::task::spawn_blocking(move || load(&path, shard, Some(&accepted))).await;
        let loaded = match loaded {
            Ok(result) => result,
            Err(e) => Err(ConfigErrors(vec![config::ConfigError {
                file: self.config.clone(),
                line: 0,
                column: 0,
                message: format!("config loader failed: {e}"),
            }])),
        };
        match loaded {
            Ok(Config {
                catalog,
                notifiers,
                warnings,
                accepted,
                refused,
                ..
            }) => {
                for warning in &warnings {
                    tracing::warn!(cause, %warning, "config");
                }
                let catalog = Arc::new(catalog);
                if catalog.settings.listen != self.catalog.settings.listen {
                    tracing::warn!("global.listen changed: takes effect after a restart");
                }
                self.scheduler.apply(&catalog);
                if self
                    .state
                    .send(StateMsg::Catalog(Arc::clone(&catalog)))
                    .await
                    .is_err()
                {
                    return Err("shutting down".to_owned());
                }
                self.notifiers.apply(&notifiers);
                self.catalog = catalog;
                self.accepted = Arc::new(accepted);
                self.watch();
                self.show_files(&refused);
                mark_reload(&self.metrics, refused.is_empty());
                tracing::info!(
                    cause,
                    targets = self.catalog.targets.len(),
                    checks = self.scheduler.running(),
                    refused = refused.len(),
                    "config reloaded"
                );
                if refused.is_empty() {
                    return Ok(());
                }
                let mut text = String::new();
                for file in &refused {
                    let what = if file.kept {
                        "refused; its previous version stays in force"
                    } else {
                        "refused; left out"
                    };
                    tracing::error!(cause, file = %file.file.display(), "{what}");
                    text.push_str(&format!("{}: {what}\n", file.file.display()));
                    for error in &file.errors {
                        tracing::error!(cause, %error, "config file refused");
                        text.push_str(&format!("  {error}\n"));
                    }
                }
                text.push_str("every other file's changes were applied\n");
                Err(text)
            }
            Err(errors) => {
                mark_reload(&self.metrics, false);
                for error in &errors.0 {
                    tracing::error!(cause, %error, "config refused; the running config is kept");
                }
                Err(errors.to_string())
            }
        }
    }

    /// One series per file: 1 for the files in force as on disk, 0 for refused ones; the
    /// series of files no longer read go.
    fn show_files(&mut self, refused: &[config::Refused]) {
        let gauge = &self.metrics.file_reload_successful;
        let mut shown: Vec<PathBuf> = self.catalog.sources.clone();
        shown.extend(refused.iter().map(|r| r.file.clone()));
        for old in &self.files_shown {
            if !shown.contains(old) {
                let _ = gauge.remove_label_values(&[&old.to_string_lossy()]);
            }
        }
        for file in &shown {
            let ok = !refused.iter().any(|r| r.file == *file);
            gauge
                .with_label_values(&[&file.to_string_lossy()])
                .set(i64::from(ok));
        }
        self.files_shown = shown;
    }

    fn watch(&mut self) {
        if let Some(watcher) = &mut self.watcher {
            watcher.watch(&self.catalog.watched);
        }
    }
}

/// Watches the directories of the config files; reports a change to a file the config read
/// or a new file one of its globs matches, and the creation of a directory a glob points
/// into (`conf.d/` made after start-up).
struct ConfigWatcher {
    watcher: notify::RecommendedWatcher,
    /// What counts, shared with the watcher's callback; replaced on every reload.
    wanted: Arc<std::sync::RwLock<Watched>>,
    watched: Vec<PathBuf>,
}

impl ConfigWatcher {
    fn new(changed: mpsc::Sender<()>) -> Result<ConfigWatcher, notify::Error> {
        let wanted = Arc::new(std::sync::RwLock::new(Watched::default()));
        let wanted_by_callback = Arc::clone(&wanted);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if event.kind.is_access() {
                return;
            }
            // Poisoning needs a panic while the lock is held; nothing there can panic.
            let wanted = wanted_by_callback.read().unwrap_or_else(|p| p.into_inner());
            let relevant = event.paths.iter().any(|p| {
                wanted.concerns(p) || (event.kind.is_create() && p.is_dir() && wanted.awaits(p))
            });
            if relevant {
                // A full channel already holds a pending change; one is enough.
                let _ = changed.try_send(());
            }
        })?;
        Ok(ConfigWatcher {
            watcher,
            wanted,
            watched: Vec::new(),
        })
    }

    fn watch(&mut self, now: &Watched) {
        let dirs = &now.dirs;
        let same_dirs = {
            let wanted = self.wanted.read().unwrap_or_else(|p| p.into_inner());
            wanted.dirs == *dirs && self.watched.iter().eq(wanted.dirs.iter())
        };
        *self.wanted.write().unwrap_or_else(|p| p.into_inner()) = now.clone();
        if same_dirs {
            return;
        }
        for dir in self.watched.drain(..) {
            let _ = self.watcher.unwatch(&dir);
        }
        for dir in dirs {
            // A directory that does not exist yet is watched through its nearest ancestor,
            // so that its creation triggers a reload, which then watches it directly.
            let Some(existing) = dir.ancestors().find(|d| d.is_dir()) else {
                continue;
            };
            if self.watched.iter().any(|w| w == existing) {
                continue;
            }
            match self
                .watcher
                .watch(existing, notify::RecursiveMode::NonRecursive)
            {
                Ok(()) => self.watched.push(existing.to_owned()),
                Err(error) => {
                    tracing::warn!(dir = %existing.display(), %error, "cannot watch config directory")
                }
            }
        }
    }
}

#[cfg(unix)]
fn signal_hangup() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; reload over HTTP or by file change");
            None
        }
    }
}

#[cfg(unix)]
async fn recv_signal(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}
