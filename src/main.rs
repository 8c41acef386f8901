//! Command line: parses flags, sets up logging and exit codes, and calls into the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use iocwatch::probe::{Kind, Probe, ProbeContext};
use tokio_util::sync::CancellationToken;

/// Exit code for an invalid config (EX_USAGE-like, as sysexits' 64).
const EXIT_BAD_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "iocwatch",
    version,
    about = "Monitoring agent for provincial operations centres"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Main config file.
    #[arg(short = 'c', long = "config", visible_alias = "config.file", global = true, default_value = iocwatch::config::DEFAULT_PATH)]
    config: PathBuf,
    /// Check the config and exit (same as `check-config`).
    #[arg(long = "config.check", global = true)]
    config_check: bool,
    /// Address to listen on (repeatable); overrides `global.listen`.
    #[arg(long = "listen", visible_alias = "web.listen-address", global = true)]
    listen: Vec<SocketAddr>,
    /// Path under which metrics are served.
    #[arg(long = "web.telemetry-path", global = true, default_value = "/metrics")]
    telemetry_path: String,
    /// Directory of the embedded database (baselines; alert state later).
    #[arg(
        long = "storage.path",
        env = "IOCWATCH_STORAGE_PATH",
        global = true,
        default_value = "data"
    )]
    storage_path: PathBuf,
    /// This agent's shard, 0-based (several agents sharing one config; in Kubernetes the
    /// StatefulSet pod index).
    #[arg(
        long = "shard.index",
        env = "IOCWATCH_SHARD_INDEX",
        global = true,
        requires = "shard_count"
    )]
    shard_index: Option<u32>,
    /// How many shards share the config.
    #[arg(
        long = "shard.count",
        env = "IOCWATCH_SHARD_COUNT",
        global = true,
        requires = "shard_index"
    )]
    shard_count: Option<u32>,
    #[arg(long = "log.level", global = true, default_value = "info")]
    log_level: LogLevel,
    #[arg(long = "log.format", global = true, default_value = "logfmt")]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (the default).
    Run,
    /// Validate the config; list every error with file:line:column.
    CheckConfig,
    /// Manage the baselines that DNS, TLS and page-content checks compare against.
    Baseline {
        #[command(subcommand)]
        action: BaselineAction,
    },
    /// Run one probe now and print what it measured.
    Probe {
        #[arg(value_parser = str::parse::<Kind>)]
        kind: Kind,
        /// Host or IP for icmp and ports, HOST:PORT for tcp, HOST[:PORT] for tls, a URL for
        /// http, NAME@SERVER[:PORT] for dns.
        target: String,
        /// How long the probe may take.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
    },
}

#[derive(Subcommand)]
enum BaselineAction {
    /// Accept the target's current DNS answers, certificate and page as legitimate: the
    /// running agent takes them as the new baselines.
    Accept {
        target: String,
        /// The running agent.
        #[arg(long, default_value = "http://127.0.0.1:10090")]
        agent: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Logfmt,
    Json,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    iocwatch::config::parse_duration(text)
}

fn init_logging(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},hyper=warn,reqwest=warn"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Logfmt => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_level, cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.config_check {
        return check_config(&cli.config);
    }
    match cli.command.as_ref().unwrap_or(&Command::Run) {
        Command::Run => runtime.block_on(run(&cli)),
        Command::CheckConfig => check_config(&cli.config),
        Command::Baseline {
            action: BaselineAction::Accept { target, agent },
        } => runtime.block_on(accept_baseline(agent, target)),
        Command::Probe {
            kind,
            target,
            timeout,
        } => runtime.block_on(probe_once(*kind, target, *timeout)),
    }
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match iocwatch::config::load(path) {
        Ok(iocwatch::config::Config { catalog, .. }) => {
            println!(
                "{}: ok ({} areas, {} systems, {} targets, {} checks, {} files)",
                path.display(),
                catalog.areas.len(),
                catalog.systems.len(),
                catalog.targets.len(),
                catalog.checks().count(),
                catalog.sources.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("{error}");
            }
            eprintln!("{} error(s)", errors.0.len());
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

async fn run(cli: &Cli) -> ExitCode {
    let shutdown = CancellationToken::new();
    let mut options = iocwatch::Options::new(&cli.config);
    options.listen = (!cli.listen.is_empty()).then(|| cli.listen.clone());
    options.telemetry_path = cli.telemetry_path.clone();
    options.storage = Some(cli.storage_path.clone());
    if let (Some(index), Some(count)) = (cli.shard_index, cli.shard_count) {
        if count == 0 || index >= count {
            eprintln!("--shard.index {index} must be below --shard.count {count}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
        options.shard = Some(iocwatch::catalog::Shard { index, count });
    }
    let agent = match iocwatch::start(options, shutdown.clone()).await {
        Ok(agent) => agent,
        Err(iocwatch::AppError::Config(errors)) => {
            for error in &errors.0 {
                eprintln!("{error}");
            }
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    tokio::spawn(cancel_on_signal(shutdown));
    agent.wait().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Asks the running agent (which owns the baselines) to accept the target's current content.
async fn accept_baseline(agent: &str, target: &str) -> ExitCode {
    let client = match reqwest::Client::builder()
        .use_preconfigured_tls(rustls::ClientConfig::clone(
            &iocwatch::tls::system_tls_config(),
        ))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot build an HTTP client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let base = format!("{}/api/v1/baselines/accept", agent.trim_end_matches('/'));
    let url = match reqwest::Url::parse_with_params(&base, [("target", target)]) {
        Ok(url) => url,
        Err(e) => {
            eprintln!("invalid --agent {agent:?}: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let sent = client.post(url).send().await;
    match sent {
        Ok(response) => {
            let ok = response.status().is_success();
            let body = response.text().await.unwrap_or_default();
            if ok {
                println!("{}", body.trim());
                ExitCode::SUCCESS
            } else {
                eprintln!("{}", body.trim());
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("cannot reach the agent at {agent}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}

async fn probe_once(kind: Kind, target: &str, timeout: Duration) -> ExitCode {
    let probe = match Probe::for_target(kind, target) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let ctx = ProbeContext::new();
    let outcome = probe.run(&ctx, tokio::time::Instant::now() + timeout).await;
    print!("{kind} {target}: {outcome}");
    if outcome.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
