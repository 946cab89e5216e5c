//! The `kanmon` command: reads arguments and hands over to the library.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kanmon::Config;

#[derive(Parser)]
#[command(
    name = "kanmon",
    version,
    about = "Password + TOTP login gateway in front of a web application"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, env = "KANMON_CONFIG")]
        config: PathBuf,
    },
    /// Read a password (one line) on standard input and print its argon2id hash.
    HashPassword,
    /// Validate a configuration file without starting; exit 2 when it is invalid.
    CheckConfig {
        #[arg(long, env = "KANMON_CONFIG")]
        config: PathBuf,
    },
    /// Send a test e-mail through the configured SMTP server.
    SmtpTest {
        #[arg(long, env = "KANMON_CONFIG")]
        config: PathBuf,
        /// The recipient.
        #[arg(long)]
        to: String,
    },
    /// Ask a running gateway whether it is healthy (for container health checks).
    Healthcheck {
        #[arg(long, env = "KANMON_CONFIG")]
        config: PathBuf,
    },
    /// Accounts' runtime state: works whether the gateway runs (through its control
    /// socket) or not (the database opened directly).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(clap::Args)]
struct ConfigArg {
    #[arg(long, env = "KANMON_CONFIG")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Show one account, or all: two-step switch, authenticator, lock, failures, last
    /// login, open sessions.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// A user ID; every account when left out.
        id: Option<String>,
    },
    /// Remove the account's authenticator association: the next login enrolls again.
    #[command(name = "reset-2fa")]
    Reset2fa {
        #[command(flatten)]
        config: ConfigArg,
        id: String,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: String,
    },
    /// Clear every failure limit of the account (back-off and lock).
    Unlock {
        #[command(flatten)]
        config: ConfigArg,
        id: String,
    },
    /// End every session of the account.
    Logout {
        #[command(flatten)]
        config: ConfigArg,
        id: String,
    },
}

/// Exit code for configuration errors, distinct from other failures.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::HashPassword => hash_password(),
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(c) => {
                if let Some(w) = c.users_file_warning() {
                    eprintln!("warning: {w}");
                }
                println!("{}: OK ({} accounts)", config.display(), c.users().count());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Healthcheck { config } => healthcheck(config),
        Command::SmtpTest { config, to } => smtp_test(config, &to),
        Command::User { command } => {
            use kanmon::admin::Command as C;
            let (config, command) = match command {
                UserCommand::Status { config, id } => (config, C::Status { user: id }),
                UserCommand::Reset2fa { config, id, reason } => (config, C::Reset2fa { user: id, reason }),
                UserCommand::Unlock { config, id } => (config, C::Unlock { user: id }),
                UserCommand::Logout { config, id } => (config, C::Logout { user: id }),
            };
            user_command(config.config, command)
        }
    }
}

/// Text or JSON lines, from the config (`log.format`) unless `KANMON_LOG_FORMAT` says.
fn init_logging(format: kanmon::config::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("KANMON_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match std::env::var("KANMON_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => format == kanmon::config::LogFormat::Json,
    };
    if json {
        tracing_subscriber::fmt().json().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the async runtime")
}

fn serve(path: PathBuf) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging(config.log_format);
    runtime().block_on(async move {
        let running = match kanmon::build(config, kanmon::Options::default()).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("kanmon: {e}");
                return ExitCode::FAILURE;
            }
        };
        eprintln!("kanmon: listening on https://{}", running.addr);
        wait_for_stop().await;
        tracing::info!("stopping");
        running.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_stop() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn hash_password() -> ExitCode {
    if std::io::stdin().is_terminal() {
        eprintln!("Type the password and press Enter (it is shown as you type; pipe it in to avoid that):");
    }
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        eprintln!("kanmon: cannot read standard input");
        return ExitCode::FAILURE;
    }
    let password = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line);
    if let Err(why) = kanmon::auth::password::check_length(password) {
        eprintln!("kanmon: {why}");
        return ExitCode::FAILURE;
    }
    // Still printed: the administrator decides, zxcvbn only advises.
    if let Some(warning) = kanmon::auth::password::weakness(password, &[]) {
        eprintln!("kanmon: warning: {warning}");
    }
    println!(
        "{}",
        kanmon::auth::password::hash(password, &kanmon::auth::SystemRandom)
    );
    ExitCode::SUCCESS
}

/// `kanmon user …`: through the running gateway's control socket, or on the database
/// itself when no gateway listens.
fn user_command(path: PathBuf, command: kanmon::admin::Command) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    runtime().block_on(async move {
        let socket = kanmon::control::socket_path(&config.data_dir);
        let reply = match kanmon::control::request(&config.data_dir, &command).await {
            Ok(Some(reply)) => reply,
            Ok(None) => offline(config, command).await,
            Err(e) => {
                eprintln!("kanmon: {}: {e}", socket.display());
                return ExitCode::FAILURE;
            }
        };
        match reply {
            kanmon::control::Reply {
                ok: true,
                output: Some(output),
                ..
            } => {
                print_output(&output);
                ExitCode::SUCCESS
            }
            r => {
                eprintln!("kanmon: {}", r.error.as_deref().unwrap_or("the command failed"));
                ExitCode::FAILURE
            }
        }
    })
}

/// No gateway listens: the command opens the database itself.
async fn offline(config: Config, command: kanmon::admin::Command) -> kanmon::control::Reply {
    use kanmon::control::Reply;
    use std::os::unix::fs::DirBuilderExt;
    let fail = |e: String| Reply {
        ok: false,
        output: None,
        error: Some(e),
    };
    kanmon::tls::install_crypto_provider();
    if let Err(e) = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.data_dir)
    {
        return fail(format!("{}: {e}", config.data_dir.display()));
    }
    let store = match kanmon::store::Store::open(&config.data_dir) {
        Ok(s) => s,
        Err(kanmon::store::StoreError::AlreadyOpen) => {
            return fail(format!(
                "the database in {} is in use, but no gateway answers on its control socket",
                config.data_dir.display()
            ));
        }
        Err(e) => return fail(e.to_string()),
    };
    let mailer = match config.smtp.as_ref().map(kanmon::mail::Mailer::new).transpose() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("kanmon: warning: no e-mail to the user: {e}");
            None
        }
    };
    let env = kanmon::admin::Offline {
        config: std::sync::Arc::new(config),
        store,
        mailer,
        render: kanmon::render::Renderer::new(),
        clock: std::sync::Arc::new(kanmon::clock::SystemClock),
    };
    match kanmon::admin::run(&env, &kanmon::admin::Actor::cli(), command).await {
        Ok(output) => Reply {
            ok: true,
            output: Some(output),
            error: None,
        },
        Err(e) => fail(e.to_string()),
    }
}

fn print_output(output: &kanmon::admin::Output) {
    match output {
        kanmon::admin::Output::Status { accounts } => print!("{}", kanmon::admin::status_table(accounts)),
        kanmon::admin::Output::Done {
            message,
            sessions_ended,
            ..
        } => match sessions_ended {
            Some(n) => println!("{message}; {n} session(s) ended"),
            None => println!("{message}"),
        },
    }
}

fn healthcheck(path: PathBuf) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match runtime().block_on(kanmon::health::probe(&config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kanmon: unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn smtp_test(path: PathBuf, to: &str) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let Some(smtp) = config.smtp.clone() else {
        eprintln!("{}: there is no smtp section", path.display());
        return ExitCode::from(EXIT_CONFIG);
    };
    runtime().block_on(async move {
        let mailer = match kanmon::mail::Mailer::new(&smtp) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("kanmon: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        match mailer.send(to, kanmon::mail::test_mail(config.default_lang)).await {
            Ok(()) => {
                println!("sent a test e-mail to {to} through {}:{}", smtp.host, smtp.port);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kanmon: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
