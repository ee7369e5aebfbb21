//! acgs: a governance control plane for automated and AI agents, in one binary.
//!
//! The binary (`main.rs`) only calls [`main`]. Everything lives here: the command line
//! ([`cli`]), configuration ([`config`]), what every service shares ([`kernel`]), the seven
//! services ([`services`]), starting and stopping them ([`server`]), the small operator tools
//! ([`tools`]), the infrastructure stand-ins ([`shim`]) and the files bundled into the binary
//! ([`embedded`]). See ARCHITECTURE.md.

pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod embedded;
pub mod kernel;
pub mod server;
pub mod services;
pub mod shim;
pub mod tools;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, ConfigArgs, Selection, ShimCommand};
use crate::config::{Config, ConfigError, Sources};

/// How a command failed, and so which exit code it gets.
#[derive(Debug)]
pub enum Failure {
    /// The caller's mistake (bad flag, bad configuration): exit code 2.
    Usage(String),
    /// Anything else: exit code 1, the error printed with its chain of causes.
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Usage(e.to_string())
    }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_failure(&e),
    };
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(Failure::Usage(message)) => {
            eprintln!("acgs: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("acgs: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// clap's help and version go to stdout with exit 0; its errors become one line and exit 2.
fn clap_failure(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let text = e.render().to_string();
    let line = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:"))
        .collect::<Vec<_>>()
        .join(" ");
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    eprintln!("acgs: {line} (see acgs --help)");
    ExitCode::from(2)
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(anyhow::Error::new(e).context("cannot start the async runtime")))
}

fn dispatch(command: Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Up(run) => serve(Selection::All, None, run),
        Command::Serve(args) => serve(args.service, args.port, args.run),
        Command::Migrate(args) => {
            let config = load_config(&args.config, Vec::new())?;
            init_logging(&config);
            let selection = args.service.unwrap_or(Selection::All).services();
            runtime()?.block_on(tools::migrate::run(&config, &selection))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup(args) => {
            let config = load_config(&args.config, Vec::new())?;
            init_logging(&config);
            runtime()?.block_on(tools::backup::backup(&config, &args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore(args) => {
            let config = load_config(&args.config, Vec::new())?;
            init_logging(&config);
            runtime()?.block_on(tools::backup::restore(&config, &args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bootstrap(args) => {
            bootstrap::check(&args).map_err(Failure::Usage)?;
            init_logging_with(tracing_subscriber::EnvFilter::new("warn"), false);
            Ok(runtime()?.block_on(bootstrap::run(*args))?)
        }
        Command::Images { command } => tool(bootstrap::archive::run(command)),
        Command::Healthcheck(args) => tool(tools::healthcheck::run(args)),
        Command::WaitFor(args) => tool(tools::wait_for::run(args)),
        Command::Certs(args) => tool(tools::certs::run(args)),
        Command::Embedded(args) => tool(tools::export::run(args)),
        Command::Verify(args) => verify(args),
        Command::Shim { command: ShimCommand::Nats(args) } => shim_nats(args),
        Command::Shim { command: ShimCommand::Redis(args) } => shim_redis(args),
        Command::Version => {
            let hash = kernel::constitution::Constitution::genesis()
                .map(|c| c.digest().short)
                .unwrap_or_else(|e| format!("unavailable: {e}"));
            println!("acgs {} (embedded genesis constitution {hash})", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs a tool to completion: exit 0, or 1 with the error.
fn tool(run: impl std::future::Future<Output = anyhow::Result<()>>) -> Result<ExitCode, Failure> {
    runtime()?.block_on(run)?;
    Ok(ExitCode::SUCCESS)
}

/// `acgs verify` has a verdict, so one more exit code: 0 valid, 1 invalid, 2 the caller's mistake,
/// 3 no verdict (the log could not be asked, or the data dir is in use).
fn verify(args: tools::verify::VerifyArgs) -> Result<ExitCode, Failure> {
    use tools::verify::{CannotVerify, Verdict};
    match runtime()?.block_on(tools::verify::run(args)) {
        Ok(Verdict::Valid) => Ok(ExitCode::SUCCESS),
        Ok(Verdict::Invalid) => Ok(ExitCode::FAILURE),
        Err(CannotVerify::Usage(message)) => Err(Failure::Usage(message)),
        Err(CannotVerify::Unavailable(message)) => {
            eprintln!("acgs: cannot verify: {message}");
            Ok(ExitCode::from(3))
        }
    }
}

fn load_config(args: &ConfigArgs, mut extra: Vec<(&'static str, toml::Value)>) -> Result<Config, Failure> {
    let env = |name: &str| std::env::var(name).ok();
    let mut flags = args.as_flags();
    flags.append(&mut extra);
    let loaded = Config::load(Sources { file: args.config.as_deref(), env: &env, flags })?;
    for warning in &loaded.warnings {
        eprintln!("acgs: warning: {warning}");
    }
    Ok(loaded.config)
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    init_logging_with(filter, config.log.format == "json");
}

fn init_logging_with(filter: tracing_subscriber::EnvFilter, json: bool) {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

/// `acgs shim nats`: until SIGTERM or Ctrl-C; connections get the write deadline to flush.
fn shim_nats(args: shim::nats::NatsArgs) -> Result<ExitCode, Failure> {
    let options = args.options().map_err(Failure::Usage)?;
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level).map_err(|e| {
        Failure::Usage(format!("--log-level (ACGS_LOG_LEVEL) {:?} is not a tracing filter: {e}", args.log_level))
    })?;
    init_logging_with(filter, false);
    runtime()?.block_on(shim::nats::serve(args, options, kernel::shutdown::signal()))?;
    Ok(ExitCode::SUCCESS)
}

/// `acgs shim redis`: until SIGTERM or Ctrl-C; then what is pending is committed.
fn shim_redis(args: shim::redis::RedisArgs) -> Result<ExitCode, Failure> {
    let options = args.options().map_err(Failure::Usage)?;
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level).map_err(|e| {
        Failure::Usage(format!("--log-level (ACGS_LOG_LEVEL) {:?} is not a tracing filter: {e}", args.log_level))
    })?;
    init_logging_with(filter, false);
    runtime()?.block_on(shim::redis::serve(args, options, kernel::shutdown::signal()))?;
    Ok(ExitCode::SUCCESS)
}

fn serve(selection: Selection, port: Option<u16>, run: cli::RunArgs) -> Result<ExitCode, Failure> {
    let mut extra = Vec::new();
    if let Some(bind) = &run.bind {
        extra.push(("bind", toml::Value::String(bind.clone())));
    }
    let mut config = load_config(&run.config, extra)?;
    let services = selection.services();
    if let Some(port) = port {
        match selection {
            Selection::One(name) => config.set_port(name, port),
            Selection::All => {
                return Err(Failure::Usage(
                    "--port (SERVICE_PORT) applies to one service; set ACGS_<SERVICE>_PORT for each instead".into(),
                ));
            }
        }
    }
    init_logging(&config);
    let grace = std::time::Duration::from_millis(config.http.shutdown_grace_ms);
    let rt = runtime()?;
    let result = rt.block_on(async move {
        let stack = server::start(config, &services).await.map_err(|e| Failure::Runtime(e.into()))?;
        announce(&stack);
        kernel::shutdown::signal().await;
        stack.stop().await;
        Ok::<_, Failure>(())
    });
    // Connections still open after the grace period must not keep the process alive.
    rt.shutdown_timeout(grace);
    result.map(|()| ExitCode::SUCCESS)
}

fn announce(stack: &server::Stack) {
    use crate::services::auth::AdminBootstrap;
    for service in &stack.services {
        eprintln!("acgs: {:<12} listening on http://{}", service.name.as_str(), service.addr);
    }
    eprintln!("acgs: constitutional hash {}", stack.constitutional_hash);
    match &stack.admin {
        Some(AdminBootstrap::CreatedWithGeneratedPassword(path)) => eprintln!(
            "acgs: created user `admin`; its password is in {} (mode 0600): read it, log in, then change it",
            path.display()
        ),
        Some(AdminBootstrap::CreatedWithConfiguredPassword) => {
            eprintln!("acgs: created user `admin` with the password from ACGS_ADMIN_PASSWORD")
        }
        _ => {}
    }
}
