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
    /// Where this agent measures from (a commune's box, "ioc"): a `vantage` label on every
    /// series, so one Prometheus tells "down for everyone" from "unreachable from here".
    #[arg(long, env = "IOCWATCH_VANTAGE", global = true)]
    vantage: Option<String>,
    /// The exporter-toolkit web config file: TLS, client certificates, basic auth, headers.
    #[arg(long = "web.config.file", global = true)]
    web_config: Option<PathBuf>,
    /// Allow `POST /-/reload` without a user of the web config (as Prometheus's flag).
    #[arg(long = "web.enable-lifecycle", global = true)]
    enable_lifecycle: bool,
    /// Allow baseline acceptance over HTTP without a user of the web config.
    #[arg(long = "web.enable-admin-api", global = true)]
    enable_admin_api: bool,
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
    /// Ask the running agent to read its config again (as SIGHUP does).
    Reload {
        #[command(flatten)]
        agent: AgentClient,
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
    /// Availability per unit over a period, ranked, from the agent's database (safe while
    /// the agent runs): HTML for print, XLSX for Excel, CSV or Markdown.
    Report(ReportArgs),
    /// Turn a spreadsheet of sites (CSV or XLSX; templates in config/) into an owner file,
    /// checked with the whole config; nothing is written while any row is wrong.
    Import {
        /// The sheet: .csv or .xlsx.
        sheet: PathBuf,
        /// Who keeps these sites (the file's `owner:`).
        #[arg(long)]
        owner: Option<String>,
        /// How to reach them (the file's `contact:`).
        #[arg(long)]
        contact: Option<String>,
        /// The owner file to write (where the config's include finds it); standard output
        /// when absent.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ReportArgs {
    /// First day (YYYY-MM-DD, local) or an RFC 3339 time.
    #[arg(long)]
    from: String,
    /// Last day, included (YYYY-MM-DD, local), or an RFC 3339 time (excluded).
    #[arg(long)]
    to: String,
    /// Units to rank: area (rolled up the area tree), system, owner or target.
    #[arg(long, value_enum, default_value_t = iocwatch::report::By::Area)]
    by: iocwatch::report::By,
    /// Only this area and what lies below it.
    #[arg(long)]
    area: Option<String>,
    /// By default from the extension of -o, else md.
    #[arg(long, value_enum)]
    format: Option<iocwatch::report::Format>,
    /// Language of the report's headings and words.
    #[arg(long, value_enum, default_value_t)]
    lang: iocwatch::model::Language,
    /// IANA time zone of the days and times.
    #[arg(long = "time-zone", default_value = "Asia/Ho_Chi_Minh")]
    time_zone: chrono_tz::Tz,
    /// Write here instead of standard output.
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
}

#[derive(Subcommand)]
enum BaselineAction {
    /// Accept the target's current DNS answers, certificate and page as legitimate: the
    /// running agent takes them as the new baselines.
    Accept {
        target: String,
        #[command(flatten)]
        agent: AgentClient,
    },
}

/// How a command reaches the running agent.
#[derive(clap::Args)]
struct AgentClient {
    /// The running agent.
    #[arg(long, default_value = "http://127.0.0.1:10090")]
    agent: String,
    /// A user of the agent's web config (basic auth).
    #[arg(long = "web.user", requires = "password_file")]
    user: Option<String>,
    /// The file holding that user's password.
    #[arg(long = "web.password-file", requires = "user")]
    password_file: Option<PathBuf>,
    /// The CA that signed the agent's certificate (HTTPS).
    #[arg(long = "web.ca-file")]
    ca_file: Option<PathBuf>,
    /// A client certificate, when the agent asks for one.
    #[arg(long = "web.cert-file", requires = "key_file")]
    cert_file: Option<PathBuf>,
    #[arg(long = "web.key-file", requires = "cert_file")]
    key_file: Option<PathBuf>,
}

impl AgentClient {
    /// POSTs an admin request to the agent and prints its answer.
    async fn post(&self, path: &str, query: &[(&str, &str)]) -> ExitCode {
        let fail = |message: String| {
            eprintln!("{message}");
            ExitCode::FAILURE
        };
        let roots = match &self.ca_file {
            Some(ca) => match iocwatch::tls::ca_roots(&ca.to_string_lossy()) {
                Ok(roots) => roots,
                Err(e) => return fail(e),
            },
            None => iocwatch::tls::system_roots().as_ref().clone(),
        };
        let (cert, key) = (
            self.cert_file
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            self.key_file
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
        );
        let identity = cert.as_deref().zip(key.as_deref());
        let tls = match iocwatch::tls::client_config(roots, identity) {
            Ok(tls) => tls,
            Err(e) => return fail(e),
        };
        let client = match reqwest::Client::builder()
            .use_preconfigured_tls(rustls::ClientConfig::clone(&tls))
            .build()
        {
            Ok(c) => c,
            Err(e) => return fail(format!("cannot build an HTTP client: {e}")),
        };
        let base = format!("{}{path}", self.agent.trim_end_matches('/'));
        let url = match reqwest::Url::parse_with_params(&base, query) {
            Ok(url) => url,
            Err(e) => {
                eprintln!("invalid --agent {:?}: {e}", self.agent);
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        };
        // The header tells the agent this is not a form some web page submitted.
        let mut request = client.post(url).header("X-Requested-By", "iocwatch-cli");
        if let (Some(user), Some(file)) = (&self.user, &self.password_file) {
            let password = match std::fs::read_to_string(file) {
                Ok(p) => p.trim_end_matches(['\n', '\r']).to_owned(),
                Err(e) => return fail(format!("cannot read --web.password-file: {e}")),
            };
            request = request.basic_auth(user, Some(password));
        }
        match request.send().await {
            Ok(response) => {
                let ok = response.status().is_success();
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                if ok {
                    println!("{}", body.trim());
                    ExitCode::SUCCESS
                } else {
                    fail(format!("{status}: {}", body.trim()))
                }
            }
            Err(e) => fail(format!(
                "cannot reach the agent at {}: {}",
                self.agent,
                e.without_url()
            )),
        }
    }
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
        } => runtime.block_on(agent.post("/api/v1/baselines/accept", &[("target", target)])),
        Command::Reload { agent } => runtime.block_on(agent.post("/-/reload", &[])),
        Command::Probe {
            kind,
            target,
            timeout,
        } => runtime.block_on(probe_once(*kind, target, *timeout)),
        Command::Report(args) => report(&cli.storage_path, args),
        Command::Import {
            sheet,
            owner,
            contact,
            output,
        } => import(&cli.config, sheet, owner, contact, output.as_deref()),
    }
}

fn import(
    config: &std::path::Path,
    sheet: &std::path::Path,
    owner: &Option<String>,
    contact: &Option<String>,
    output: Option<&std::path::Path>,
) -> ExitCode {
    use iocwatch::config::import;
    // Printed, it is checked as if it sat beside the main config.
    let beside = config
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join("imported.yaml");
    let owner = import::Owner {
        name: owner.clone(),
        contact: contact.clone(),
    };
    match import::import(sheet, config, output.unwrap_or(&beside), &owner) {
        Ok((yaml, targets)) => {
            let written = match output {
                Some(path) => std::fs::write(path, &yaml)
                    .map(|()| eprintln!("{}: {targets} targets", path.display()))
                    .map_err(|e| format!("cannot write {}: {e}", path.display())),
                None => std::io::Write::write_all(&mut std::io::stdout(), yaml.as_bytes())
                    .map_err(|e| format!("cannot write: {e}")),
            };
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(errors) => {
            for error in &errors {
                eprintln!("{}: {error}", sheet.display());
            }
            eprintln!("{} error(s); nothing written", errors.len());
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

fn report(storage: &std::path::Path, args: &ReportArgs) -> ExitCode {
    use iocwatch::report::{self, Format};
    let fail = |message: String, code: u8| {
        eprintln!("{message}");
        ExitCode::from(code)
    };
    let (from, to) = match report::parse_period(&args.from, &args.to, args.time_zone) {
        Ok(period) => period,
        Err(e) => return fail(e.to_string(), EXIT_BAD_CONFIG),
    };
    let format = args.format.unwrap_or_else(|| {
        let extension = args.output.as_ref().and_then(|o| o.extension());
        extension
            .and_then(|e| e.to_str())
            .and_then(|e| Format::from_str(e, true).ok())
            .unwrap_or(Format::Md)
    });
    let history = match iocwatch::store::open_read_only(storage)
        .and_then(|conn| iocwatch::store::read_history_of(&conn, from, to))
    {
        Ok(history) => history,
        Err(e) => return fail(e.to_string(), 1),
    };
    let request = report::Request {
        from,
        to,
        by: args.by,
        area: args.area.clone(),
        language: args.lang,
        time_zone: args.time_zone,
        now: iocwatch::model::unix_ms(std::time::SystemTime::now()),
    };
    let bytes = match report::build(&history, &request, &format.groupings(args.by))
        .and_then(|r| report::render(&r, format))
    {
        Ok(bytes) => bytes,
        Err(e) => return fail(e.to_string(), 1),
    };
    let written = match &args.output {
        Some(path) => std::fs::write(path, &bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display())),
        None => std::io::Write::write_all(&mut std::io::stdout(), &bytes)
            .map_err(|e| format!("cannot write the report: {e}")),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e, 1),
    }
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match iocwatch::config::load(path) {
        Ok(iocwatch::config::Config {
            catalog,
            warnings,
            owners,
            ..
        }) => {
            for warning in &warnings {
                eprintln!("warning: {warning}");
            }
            println!(
                "{}: ok ({} areas, {} systems, {} targets, {} checks, {} files)",
                path.display(),
                catalog.areas.len(),
                catalog.systems.len(),
                catalog.targets.len(),
                catalog.checks().count(),
                catalog.sources.len()
            );
            print_owners(&catalog, &owners);
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

/// Per owner (the `owner` label, set by an owner file or on the target): targets, checks,
/// and the files that declare that owner with their contact.
fn print_owners(catalog: &iocwatch::catalog::Catalog, files: &[iocwatch::config::OwnerFile]) {
    let mut by_owner: std::collections::BTreeMap<Option<&str>, (usize, usize)> =
        std::collections::BTreeMap::new();
    for target in &catalog.targets {
        let counts = by_owner
            .entry(target.labels.get("owner").map(String::as_str))
            .or_default();
        counts.0 += 1;
        counts.1 += target.checks.len();
    }
    if by_owner.keys().all(Option::is_none) {
        return;
    }
    println!("owners:");
    for (owner, (targets, checks)) in by_owner {
        let declared: Vec<&iocwatch::config::OwnerFile> = files
            .iter()
            .filter(|f| Some(f.owner.as_str()) == owner)
            .collect();
        let contact = declared
            .iter()
            .find_map(|f| f.contact.as_deref())
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        let listed: Vec<String> = declared
            .iter()
            .map(|f| f.file.display().to_string())
            .collect();
        let from = if listed.is_empty() {
            String::new()
        } else {
            format!(" in {}", listed.join(", "))
        };
        println!(
            "  {}{contact}: {targets} targets, {checks} checks{from}",
            owner.unwrap_or("(no owner)")
        );
    }
}

async fn run(cli: &Cli) -> ExitCode {
    let shutdown = CancellationToken::new();
    let mut options = iocwatch::Options::new(&cli.config);
    options.listen = (!cli.listen.is_empty()).then(|| cli.listen.clone());
    options.telemetry_path = cli.telemetry_path.clone();
    options.storage = Some(cli.storage_path.clone());
    options.web_config.clone_from(&cli.web_config);
    options.enable_lifecycle = cli.enable_lifecycle;
    options.enable_admin_api = cli.enable_admin_api;
    options.vantage.clone_from(&cli.vantage);
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
