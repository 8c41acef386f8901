//! Wires the pieces together and supervises them: config → catalog → scheduler → state →
//! metrics, the HTTP server, and reload on file change, SIGHUP or `POST /-/reload`.
//! Every task runs on one [`TaskTracker`] and stops on one [`CancellationToken`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use notify::Watcher;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alert::engine::Wakes;
use crate::catalog::{Catalog, Shard};
use crate::config::{self, Config, ConfigErrors};
use crate::metrics::AgentMetrics;
use crate::notify::outbox::NotifyMetrics;
use crate::notify::Notifiers;
use crate::probe::ProbeContext;
use crate::scheduler::Scheduler;
use crate::server::{self, AcceptRequest, ReloadRequest, ServerState};
use crate::state::{self, State, StateMsg};

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
}

/// A started agent: where it listens, and how to wait for it to stop.
pub struct Agent {
    pub addrs: Vec<SocketAddr>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    grace: Duration,
}

impl Agent {
    /// Waits until `shutdown` is cancelled and every task has stopped (or the grace runs out).
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        self.tracker.close();
        if tokio::time::timeout(self.grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = self.tracker.len(),
                "shutdown grace period over; abandoning probes still in flight"
            );
        }
    }
}

/// Loads the config, starts every task and returns once the agent serves.
pub async fn start(options: Options, shutdown: CancellationToken) -> Result<Agent, AppError> {
    let Config {
        catalog,
        notifiers: notifier_specs,
    } = load(&options.config, options.shard)?;
    let catalog = Arc::new(catalog);
    let store = Arc::new(match &options.storage {
        Some(dir) => {
            let store = crate::store::Store::open(dir)?;
            tracing::info!(path = %store.path().display(), "embedded database open");
            store
        }
        None => {
            tracing::warn!("no --storage.path: alerts, incidents and the outbox live in memory and are lost on restart");
            crate::store::Store::in_memory()?
        }
    });
    let registry = Registry::new();
    let metrics = Arc::new(AgentMetrics::register(&registry)?);
    mark_reload(&metrics, true);

    let ctx = Arc::new(ProbeContext::new());
    for (family, mode) in [("ip4", ctx.icmp.mode_v4), ("ip6", ctx.icmp.mode_v6)] {
        metrics
            .icmp_socket
            .with_label_values(&[family, mode.as_str()])
            .set(1);
    }

    let tracker = TaskTracker::new();
    let (results, inbox) = mpsc::channel(8192);
    let wakes = Arc::new(Wakes::default());
    let notify_metrics = NotifyMetrics::register(&registry)?;
    let state = State::new(
        registry.clone(),
        Arc::clone(&catalog),
        Arc::clone(&store),
        Arc::clone(&wakes),
    )?;
    let status = state.subscribe();
    let alerts = state.subscribe_alerts();
    let notifiers = Notifiers::start(
        &notifier_specs,
        Arc::clone(&store),
        wakes,
        notify_metrics,
        tracker.clone(),
        shutdown.clone(),
    )
    .map_err(AppError::Http)?;
    tracker.spawn(state::run(state, inbox, shutdown.clone()));

    let mut scheduler = Scheduler::new(
        ctx,
        results.clone(),
        Arc::clone(&metrics),
        tracker.clone(),
        shutdown.clone(),
    )
    .with_store(Some(Arc::clone(&store)));
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
    let (accept_tx, accept_rx) = mpsc::channel::<AcceptRequest>(4);
    let server_state = ServerState {
        registry,
        shutdown: shutdown.clone(),
        reload: reload_tx,
        accept: accept_tx,
        telemetry_path: options.telemetry_path.clone(),
        status,
        alerts,
        store: Arc::clone(&store),
    };
    tracker.spawn(server::serve(listeners, server_state, shutdown.clone()));

    let (changed_tx, changed_rx) = mpsc::channel(1);
    let watcher = if options.watch {
        Some(ConfigWatcher::new(changed_tx)?)
    } else {
        None
    };
    let mut control = Control {
        config: options.config.clone(),
        shard: options.shard,
        catalog,
        scheduler,
        results,
        metrics,
        watcher,
        notifiers,
    };
    control.watch();
    tracker.spawn(control.run(reload_rx, accept_rx, changed_rx, shutdown.clone()));

    for addr in &bound {
        tracing::info!(%addr, path = %options.telemetry_path, "serving metrics");
    }
    Ok(Agent {
        addrs: bound,
        tracker,
        shutdown,
        grace: options.shutdown_grace,
    })
}

/// Runs the agent until `shutdown` is cancelled.
pub async fn run(options: Options, shutdown: CancellationToken) -> Result<(), AppError> {
    start(options, shutdown).await?.wait().await;
    Ok(())
}

/// Loads the config, keeping only this agent's shard of the targets.
fn load(path: &Path, shard: Option<Shard>) -> Result<Config, ConfigErrors> {
    let mut config = config::load(path)?;
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
    catalog: Arc<Catalog>,
    scheduler: Scheduler,
    results: mpsc::Sender<StateMsg>,
    metrics: Arc<AgentMetrics>,
    watcher: Option<ConfigWatcher>,
    notifiers: Notifiers,
}

impl Control {
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<ReloadRequest>,
        mut accepts: mpsc::Receiver<AcceptRequest>,
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
                Some((target, reply)) = accepts.recv() => {
                    let known = self.catalog.targets.iter().any(|t| *t.id == *target);
                    let accepted = known.then(|| self.scheduler.accept_baselines(&target));
                    tracing::info!(target = %target, checks = ?accepted, "baselines accepted");
                    let _ = reply.send(accepted);
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
        let loaded = tokio::task::spawn_blocking(move || load(&path, shard)).await;
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
            Ok(Config { catalog, notifiers }) => {
                let catalog = Arc::new(catalog);
                if catalog.settings.listen != self.catalog.settings.listen {
                    tracing::warn!("global.listen changed: takes effect after a restart");
                }
                self.scheduler.apply(&catalog);
                if self
                    .results
                    .send(StateMsg::Catalog(Arc::clone(&catalog)))
                    .await
                    .is_err()
                {
                    return Err("shutting down".to_owned());
                }
                self.notifiers.apply(&notifiers);
                self.catalog = catalog;
                self.watch();
                mark_reload(&self.metrics, true);
                tracing::info!(
                    cause,
                    targets = self.catalog.targets.len(),
                    checks = self.scheduler.running(),
                    "config reloaded"
                );
                Ok(())
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

    fn watch(&mut self) {
        if let Some(watcher) = &mut self.watcher {
            watcher.watch(&self.catalog.watch_dirs);
        }
    }
}

/// Watches the directories of the config files; reports any change to a YAML or JSON file,
/// and the creation of a directory a glob points into (`conf.d/` made after start-up).
struct ConfigWatcher {
    watcher: notify::RecommendedWatcher,
    wanted: Vec<PathBuf>,
    watched: Vec<PathBuf>,
}

impl ConfigWatcher {
    fn new(changed: mpsc::Sender<()>) -> Result<ConfigWatcher, notify::Error> {
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if event.kind.is_access() {
                return;
            }
            let relevant = event
                .paths
                .iter()
                .any(|p| is_config_file(p) || (event.kind.is_create() && p.is_dir()));
            if relevant {
                // A full channel already holds a pending change; one is enough.
                let _ = changed.try_send(());
            }
        })?;
        Ok(ConfigWatcher {
            watcher,
            wanted: Vec::new(),
            watched: Vec::new(),
        })
    }

    fn watch(&mut self, dirs: &[PathBuf]) {
        let all_there = self.watched.iter().eq(self.wanted.iter());
        if self.wanted == dirs && all_there {
            return;
        }
        for dir in self.watched.drain(..) {
            let _ = self.watcher.unwatch(&dir);
        }
        self.wanted = dirs.to_vec();
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

fn is_config_file(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
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
