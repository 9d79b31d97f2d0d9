//! `oslively`: inspect and steer an os-lively fleet from a shell.
//!
//! Exit codes: 0 success (and UP for `is-up`), 1 DOWN or not found, 2 usage
//! (bad flags or values: nothing is written), 3 etcd or connection error.
//! `oslively --help` and `oslively <command> --help` say the rest.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use os_lively::{ErrorKind, Filter, Service, Status, SubscribeOptions};

mod conn;
mod demo;
mod man;
mod output;
mod serve;
mod time;

use conn::Conn;
use output::Format;

/// Exit code: DOWN, or not found.
const EXIT_DOWN: u8 = 1;
/// Exit code: bad flags or values.
const EXIT_USAGE: u8 = 2;
/// Exit code: etcd or connection error.
const EXIT_ETCD: u8 = 3;

#[derive(Parser)]
#[command(
    name = "oslively",
    version,
    about = "Which services of a fleet are alive, kept in etcd v3",
    after_help = "Exit codes: 0 success (is-up: UP), 1 DOWN or not found, 2 usage, 3 etcd or connection error.\n\
                  Connection flags fall back to the OSLIVELY_* variables (see docs/operators.md in the repository)."
)]
struct Cli {
    /// Output format [default: table on a terminal, json otherwise]
    #[arg(short = 'o', long = "output", global = true, value_enum)]
    output: Option<Format>,
    // After `output`: its heading ("Connection") holds for what follows.
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Register a service and keep it UP until stdin closes or the process is killed
    #[command(
        after_help = "Example:\n  oslively register --type nova-compute --host host-7 --region east\n\n\
        Prints \"uuid <uuid>\" once registered. Each line \"update\" on stdin\n\
        registers again (prints \"updated\"); with --heartbeat, every line is a check-in."
    )]
    Register(RegisterArgs),
    /// Exit 0 if a service is UP, 1 if it is DOWN or unknown
    #[command(
        after_help = "Examples:\n  oslively is-up 3b059e33bbc44bc8b0d37df6e8d70223\n  \
        oslively is-up --type nova-compute --host host-7"
    )]
    IsUp(Target),
    /// Show one service (exit 1 if unknown)
    #[command(
        after_help = "Examples:\n  oslively get 3b059e33bbc44bc8b0d37df6e8d70223\n  \
        oslively get --type nova-compute --host host-7 -o json"
    )]
    Get(Target),
    /// List services; every flag narrows the list
    #[command(after_help = "Example:\n  oslively list --region east --status DOWN")]
    List(ListArgs),
    /// Print every change as it happens (one JSON line per event with -o json)
    #[command(after_help = "Example:\n  oslively watch --type nova-compute --snapshot -o json")]
    Watch(WatchArgs),
    /// Force a service DOWN for maintenance; it stays DOWN until `up` or --end
    #[command(
        after_help = "Examples:\n  oslively down 3b059e33bbc44bc8b0d37df6e8d70223 --note \"disk swap\" --end +2h\n  \
        oslively down --type nova-compute --host host-7 --note \"kernel upgrade\"\n\n\
        Times are seconds since the epoch, or +DURATION from now (+90s, +30m, +2h, +1d).\n\
        --start defaults to now when a note is given."
    )]
    Down(DownArgs),
    /// Lift a forced DOWN
    #[command(
        after_help = "Examples:\n  oslively up 3b059e33bbc44bc8b0d37df6e8d70223\n  \
        oslively up --type nova-compute --host host-7"
    )]
    Up(Target),
    /// Remove a service's record and index keys (exit 1 if unknown)
    #[command(
        after_help = "Examples:\n  oslively delete 3b059e33bbc44bc8b0d37df6e8d70223\n  \
        oslively delete --type nova-compute --host host-7"
    )]
    Delete(Target),
    /// Serve Prometheus metrics, a live status page and a JSON/SSE API (read-only)
    #[command(after_help = serve::AFTER_HELP)]
    Serve(serve::ServeArgs),
    /// Print a shell completion script
    #[command(
        after_help = "Example:\n  oslively completions bash > /etc/bash_completion.d/oslively"
    )]
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// A guided tour on a throwaway etcd it starts itself (see the README)
    Demo,
    /// Print the manual page oslively(1) in roff, or with DIR write it and
    /// one page per subcommand there (scripts/install-cli.sh does)
    #[command(hide = true)]
    Man {
        /// Directory for oslively.1 and oslively-<subcommand>.1
        dir: Option<std::path::PathBuf>,
    },
}

#[derive(Args)]
struct RegisterArgs {
    /// What the service is, e.g. nova-compute
    #[arg(long = "type", value_name = "TYPE")]
    service_type: String,
    /// Where it runs
    #[arg(long)]
    host: String,
    /// Region
    #[arg(long, default_value = "")]
    region: String,
    /// Re-register with this uuid (a restarted daemon's saved uuid)
    #[arg(long, value_parser = parse_uuid)]
    uuid: Option<String>,
    /// UP only while a line arrives on stdin at least every SECONDS
    #[arg(long, value_name = "SECONDS", value_parser = time::parse_positive_secs)]
    heartbeat: Option<std::time::Duration>,
    /// Refuse (exit 3) to take the type+host over while another live
    /// process holds it; without it, registering again takes it over
    /// (identity is type+host: a restarted daemon needs no saved uuid)
    #[arg(long)]
    exclusive: bool,
}

/// A service named by uuid, or by type and host.
#[derive(Args)]
struct Target {
    /// The service's uuid (or use --type and --host)
    #[arg(value_parser = parse_uuid, required_unless_present = "service_type", conflicts_with_all = ["service_type", "host"])]
    uuid: Option<String>,
    /// Its type
    #[arg(long = "type", value_name = "TYPE", requires = "host")]
    service_type: Option<String>,
    /// Its host
    #[arg(long, requires = "service_type")]
    host: Option<String>,
}

impl Target {
    /// The uuid given, or the one registered for --type and --host (exit 1
    /// when none is).
    fn uuid_in(&self, client: &os_lively::Client) -> Result<String, Failure> {
        match (&self.uuid, &self.service_type, &self.host) {
            (Some(u), _, _) => Ok(u.clone()),
            (None, Some(ty), Some(h)) => match client.get_by_type_host(ty, h)? {
                Some(info) => Ok(info.service.uuid),
                None => Err(Failure {
                    code: EXIT_DOWN,
                    message: format!("no service registered as --type {ty} --host {h}"),
                }),
            },
            _ => Err(Failure::usage("give a uuid, or --type and --host")),
        }
    }
}

#[derive(Args)]
struct Narrow {
    /// Only this uuid
    #[arg(long, value_parser = parse_uuid)]
    uuid: Option<String>,
    /// Only this type
    #[arg(long = "type", value_name = "TYPE")]
    service_type: Option<String>,
    /// Only this host
    #[arg(long)]
    host: Option<String>,
    /// Only this region
    #[arg(long)]
    region: Option<String>,
}

impl Narrow {
    fn filter(&self) -> Filter {
        Filter {
            uuid: self.uuid.clone(),
            service_type: self.service_type.clone(),
            host: self.host.clone(),
            region: self.region.clone(),
            status: None,
        }
    }
}

#[derive(Args)]
struct ListArgs {
    #[command(flatten)]
    narrow: Narrow,
    /// Only services whose effective status is this
    #[arg(long, value_parser = parse_status)]
    status: Option<Status>,
}

#[derive(Args)]
struct WatchArgs {
    #[command(flatten)]
    narrow: Narrow,
    /// First print every matching service as it is now (event "existing")
    #[arg(long)]
    snapshot: bool,
}

#[derive(Args)]
struct DownArgs {
    #[command(flatten)]
    target: Target,
    /// Why (recorded as the maintenance note)
    #[arg(long, default_value = "")]
    note: String,
    /// Maintenance start [default: now with --note, else none]
    #[arg(long, value_name = "TIME", value_parser = time::parse_time)]
    start: Option<u64>,
    /// Maintenance end: the owner lifts the DOWN then [default: none, until `up`]
    #[arg(long, value_name = "TIME", value_parser = time::parse_time)]
    end: Option<u64>,
}

fn parse_uuid(s: &str) -> Result<String, String> {
    os_lively::normalize_uuid(s).map_err(|e| e.message().to_string())
}

fn parse_status(s: &str) -> Result<Status, String> {
    match s.to_ascii_uppercase().as_str() {
        "UP" => Ok(Status::Up),
        "DOWN" => Ok(Status::Down),
        _ => Err(format!("{s:?}: expected UP or DOWN")),
    }
}

/// A failure with its exit code.
struct Failure {
    code: u8,
    message: String,
}

impl From<os_lively::Error> for Failure {
    fn from(e: os_lively::Error) -> Failure {
        let code = match e.kind() {
            ErrorKind::InvalidArgument | ErrorKind::Config => EXIT_USAGE,
            ErrorKind::NotFound => EXIT_DOWN,
            _ => EXIT_ETCD,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }
}

type Outcome = Result<ExitCode, Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.output.unwrap_or_else(Format::default_for_stdout);
    let name = cli.command.name();
    match run(cli, format) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("oslively {name}: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

impl Cmd {
    fn name(&self) -> &'static str {
        match self {
            Cmd::Register(_) => "register",
            Cmd::IsUp(_) => "is-up",
            Cmd::Get(_) => "get",
            Cmd::List(_) => "list",
            Cmd::Watch(_) => "watch",
            Cmd::Down(_) => "down",
            Cmd::Up(_) => "up",
            Cmd::Delete(_) => "delete",
            Cmd::Completions { .. } => "completions",
            Cmd::Demo => "demo",
            Cmd::Serve(_) => "serve",
            Cmd::Man { .. } => "man",
        }
    }
}

fn run(cli: Cli, format: Format) -> Outcome {
    match cli.command {
        Cmd::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "oslively",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Man { dir } => {
            let failed = |message| Failure {
                code: EXIT_USAGE,
                message,
            };
            match dir {
                None => man::render_main(Cli::command(), &mut std::io::stdout())
                    .map_err(|e| failed(format!("writing the manual page: {e}")))?,
                Some(dir) => {
                    for file in man::write_all(Cli::command(), &dir).map_err(failed)? {
                        println!("{}", dir.join(file).display());
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Demo => demo::run(&[]).map_err(|message| Failure {
            code: EXIT_ETCD,
            message,
        }),
        Cmd::Register(a) => register(&cli.conn, a, format),
        Cmd::IsUp(t) => is_up(&cli.conn, t, format),
        Cmd::Get(t) => get(&cli.conn, t, format),
        Cmd::List(a) => list(&cli.conn, a, format),
        Cmd::Watch(a) => watch(&cli.conn, a, format),
        Cmd::Down(a) => down(&cli.conn, a, format),
        Cmd::Up(a) => up(&cli.conn, a, format),
        Cmd::Delete(a) => delete(&cli.conn, a, format),
        Cmd::Serve(a) => serve::run(&cli.conn, a),
    }
}

fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

fn register(conn: &Conn, a: RegisterArgs, format: Format) -> Outcome {
    let mut service = Service::new(&a.service_type, &a.host).with_region(&a.region);
    if let Some(u) = &a.uuid {
        service = service.with_uuid(u);
    }
    if let Some(d) = a.heartbeat {
        service = service.with_heartbeat(d);
    }
    if a.exclusive {
        service = service.exclusive();
    }
    let client = conn.connect()?;
    let uuid = client.update(&service)?;
    print(&format.registered(&uuid));
    let service = service.with_uuid(&uuid);
    // Stay registered until our parent closes stdin (or kills us). With a
    // heartbeat deadline every other line is a check-in.
    for line in std::io::stdin().lock().lines() {
        match line.as_deref().map(str::trim) {
            Ok("update") => {
                client.update(&service)?;
                print(&format.updated(&uuid));
            }
            Ok(_) if a.heartbeat.is_some() => client.heartbeat(&uuid)?,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    client.close()?;
    Ok(ExitCode::SUCCESS)
}

fn is_up(conn: &Conn, t: Target, format: Format) -> Outcome {
    let client = conn.connect()?;
    let up = match (&t.uuid, &t.service_type, &t.host) {
        (Some(u), _, _) => client.is_up(u)?,
        (None, Some(ty), Some(h)) => client.is_up_by_type_host(ty, h)?,
        _ => return Err(Failure::usage("give a uuid, or --type and --host")),
    };
    print(&format.is_up(up));
    Ok(if up {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DOWN)
    })
}

fn get(conn: &Conn, t: Target, format: Format) -> Outcome {
    let client = conn.connect()?;
    let found = match (&t.uuid, &t.service_type, &t.host) {
        (Some(u), _, _) => client.get(u)?,
        (None, Some(ty), Some(h)) => client.get_by_type_host(ty, h)?,
        _ => return Err(Failure::usage("give a uuid, or --type and --host")),
    };
    match found {
        Some(info) => {
            print(&format.service(&info));
            Ok(ExitCode::SUCCESS)
        }
        None => Err(Failure {
            code: EXIT_DOWN,
            message: "no such service".to_string(),
        }),
    }
}

fn list(conn: &Conn, a: ListArgs, format: Format) -> Outcome {
    let mut filter = a.narrow.filter();
    filter.status = a.status;
    let client = conn.connect()?;
    let mut found = client.list(&filter)?;
    found.sort_by(|x, y| {
        (&x.service.service_type, &x.service.host, &x.service.uuid).cmp(&(
            &y.service.service_type,
            &y.service.host,
            &y.service.uuid,
        ))
    });
    print(&format.services(&found));
    Ok(ExitCode::SUCCESS)
}

fn watch(conn: &Conn, a: WatchArgs, format: Format) -> Outcome {
    let client = conn.connect()?;
    let options = SubscribeOptions {
        snapshot: a.snapshot,
        ..Default::default()
    };
    let sub = client.subscribe(&a.narrow.filter(), &options)?;
    for e in &sub {
        print(&format.event(&e));
    }
    Ok(ExitCode::SUCCESS)
}

fn down(conn: &Conn, a: DownArgs, format: Format) -> Outcome {
    let now = time::now();
    // As the original library does: a note without a start starts now.
    let start = a.start.unwrap_or(if a.note.is_empty() { 0 } else { now });
    let end = a.end.unwrap_or(0);
    if end != 0 && end <= now {
        return Err(Failure::usage(format!(
            "--end {}: that time has passed",
            time::show(end)
        )));
    }
    if end != 0 && start > end {
        return Err(Failure::usage(format!(
            "--start {} is after --end {}",
            time::show(start),
            time::show(end)
        )));
    }
    let client = conn.connect()?;
    let uuid = a.target.uuid_in(&client)?;
    client.down(&uuid, &a.note, start, end)?;
    print(&format.done(&uuid, "down"));
    Ok(ExitCode::SUCCESS)
}

fn up(conn: &Conn, t: Target, format: Format) -> Outcome {
    let client = conn.connect()?;
    let uuid = t.uuid_in(&client)?;
    client.up(&uuid)?;
    print(&format.done(&uuid, "up"));
    Ok(ExitCode::SUCCESS)
}

fn delete(conn: &Conn, t: Target, format: Format) -> Outcome {
    let client = conn.connect()?;
    let uuid = t.uuid_in(&client)?;
    if !client.delete(&uuid)? {
        return Err(Failure {
            code: EXIT_DOWN,
            message: format!("no such service {uuid}"),
        });
    }
    print(&format.done(&uuid, "delete"));
    Ok(ExitCode::SUCCESS)
}
