//! `lvs-agent`: the lvs-mesh director agent.

use clap::{Parser, Subcommand};
use lvs_proto::v1::{
    control_reply::Reply, control_request::Request, DrainRequest, JoinRequest, StatusRequest,
};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "lvs-agent", version, about = "lvs-mesh director agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load and validate config files (with LVS_* environment overrides applied):
    /// one summary line on stdout per good file, one line per error on stderr.
    CheckConfig {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Run the director: keep the kernel's IPVS services, sync daemons and
    /// net.ipv4.vs sysctls as configured (at start, on SIGHUP, every
    /// node.reconcile_interval). SIGTERM stops the agent and leaves IPVS in place.
    /// Logs go to stderr; RUST_LOG sets the level (default info). Started by systemd
    /// (Type=notify, deploy/systemd/lvs-agent.service), it reports READY once serving.
    Run {
        /// Config file; repeat for node and cluster parts (`-c node.toml -c cluster.toml`).
        #[arg(short = 'c', long = "config", required = true, value_name = "FILE")]
        config: Vec<PathBuf>,
        /// Log lines as text, or as one JSON object each (for a log shipper).
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Ask the running agent to contact more gossip peers, `host:port` (IPv6 as
    /// `[addr]:port`), to join it to a running cluster. Prints the peers that answered
    /// within 5 s and those that did not; fails when none answered.
    Join {
        /// The agent's control socket (`[node] control_socket`).
        #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        #[arg(required = true, value_name = "PEER")]
        peers: Vec<String>,
    },
    /// Drain this node: the running agent hands every VIP group it holds to a ready
    /// undrained node (planned hand-overs) and takes none, for as long as it runs.
    /// Groups no other node can take stay here and are listed.
    Drain {
        /// The agent's control socket (`[node] control_socket`).
        #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Undrain this node: eligible for VIP groups again, as a node that just came up
    /// (preempt_delay counts from now).
    Undrain {
        /// The agent's control socket (`[node] control_socket`).
        #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Print the running agent's members and VIP group owners, one line each.
    Status {
        /// The agent's control socket (`[node] control_socket`).
        #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Generate a cluster key: 32 random bytes from the operating system as 64 hex
    /// digits and a newline, for `[node] cluster_key_files`.
    Keygen {
        /// Create this file with mode 0600 (an existing file is never overwritten);
        /// without it the key goes to stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// A real server's side of the DR and TUN services (run it on the real servers,
    /// with the cluster's config): their VIPs on `lo` (DR) or `tunl0` (TUN) and the
    /// sysctls that keep the host from answering ARP for them.
    #[command(subcommand)]
    Realserver(Realserver),
    /// Translate keepalived.conf files, one per director (`include`s followed), into a
    /// cluster file and one node file per director. Every keepalived statement that
    /// is not imported, or only approximately, becomes a comment saying why, and is
    /// listed on stderr. The files are checked as check-config would; on any error
    /// nothing is written.
    ImportKeepalived {
        /// A director's keepalived.conf; `ID=FILE` names its node id (default: the
        /// file name without `.conf`), which `@ID` conditional lines are matched with.
        #[arg(required_unless_present = "keywords", value_name = "[ID=]FILE")]
        files: Vec<String>,
        /// A director's own address (gossip, control, sync), over the one its config
        /// names (unicast_src_ip or mcast_src_ip); needed where it names none; repeat
        /// per director.
        #[arg(long = "address", value_name = "ID=ADDRESS")]
        addresses: Vec<String>,
        /// A director's interface (`[node] interface`), over the one its config
        /// suggests (its lvs_sync_daemon's, else its first vrrp_instance's); repeat per
        /// director.
        #[arg(long = "interface", value_name = "ID=NAME")]
        interfaces: Vec<String>,
        /// `[cluster] name`.
        #[arg(long, default_value = "keepalived")]
        cluster_name: String,
        /// The cluster key file the node files name (`lvs-agent keygen -o FILE`).
        #[arg(long, value_name = "FILE", default_value = "/etc/lvs-mesh/cluster.key")]
        key_file: String,
        /// Write cluster.toml and ID.toml into this directory (created if missing; an
        /// existing file there stops the import); without it the files go to stdout.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Print what becomes of every keepalived keyword (a Markdown table) and exit.
        #[arg(long)]
        keywords: bool,
    },
    /// Print the man page (roff), generated from these definitions.
    Man,
}

#[derive(Subcommand)]
enum Realserver {
    /// Put the VIPs of the DR and TUN services that list one of this host's addresses
    /// on `lo` / `tunl0` (/32, the device set up when down) and set `arp_ignore=1`,
    /// `arp_announce=2` (and `rp_filter=0` for TUN); every change is recorded first, so
    /// `down` undoes it exactly. Running it again changes only what is missing.
    Up {
        /// Config file(s) with the cluster part (the services).
        #[arg(short = 'c', long = "config", required = true, value_name = "FILE")]
        config: Vec<PathBuf>,
        /// The undo record.
        #[arg(long, value_name = "PATH", default_value = lvs_agent::realserver::DEFAULT_STATE)]
        state: PathBuf,
    },
    /// Undo what `up` did: its addresses removed, the sysctls as they were.
    Down {
        /// The undo record.
        #[arg(long, value_name = "PATH", default_value = lvs_agent::realserver::DEFAULT_STATE)]
        state: PathBuf,
    },
    /// Compare this host with what `up` would set; exit status 1 when something is
    /// missing.
    Status {
        /// Config file(s) with the cluster part (the services).
        #[arg(short = 'c', long = "config", required = true, value_name = "FILE")]
        config: Vec<PathBuf>,
        /// The undo record.
        #[arg(long, value_name = "PATH", default_value = lvs_agent::realserver::DEFAULT_STATE)]
        state: PathBuf,
    },
}

const DEFAULT_SOCKET: &str = "/run/lvs-agent.sock";

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::CheckConfig { files } => check_config(&files),
        Command::Run { config, log_format } => run(config, log_format),
        Command::Join { socket, peers } => control(&socket, Request::Join(JoinRequest { peers })),
        Command::Drain { socket } => control(
            &socket,
            Request::Drain(DrainRequest {
                drain: true,
                node: String::new(),
            }),
        ),
        Command::Undrain { socket } => control(
            &socket,
            Request::Drain(DrainRequest {
                drain: false,
                node: String::new(),
            }),
        ),
        Command::Status { socket } => control(&socket, Request::Status(StatusRequest {})),
        Command::Keygen { output } => keygen(output.as_deref()),
        Command::Realserver(action) => realserver(action),
        Command::ImportKeepalived {
            files,
            addresses,
            interfaces,
            cluster_name,
            key_file,
            out,
            keywords,
        } => {
            if keywords {
                print!("{}", lvs_agent::keepalived::keywords::markdown());
                return ExitCode::SUCCESS;
            }
            import_keepalived(
                &files,
                &addresses,
                &interfaces,
                cluster_name,
                key_file,
                out.as_deref(),
            )
        }
        Command::Man => {
            use clap::CommandFactory as _;
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("lvs-agent man: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn realserver(action: Realserver) -> ExitCode {
    use lvs_agent::realserver;
    let cluster = |files: &[PathBuf]| {
        lvs_agent::config::load_all(files)
            .map_err(|e| e.to_string())?
            .cluster
            .ok_or_else(|| "the config files give no cluster part (the services)".to_owned())
    };
    let done = tokio::runtime::Runtime::new()
        .map_err(|e| format!("tokio runtime: {e}"))
        .and_then(|rt| {
            rt.block_on(async {
                match action {
                    Realserver::Up { config, state } => realserver::up(&cluster(&config)?, &state)
                        .await
                        .map(|r| (r, true)),
                    Realserver::Down { state } => realserver::down(&state).await.map(|r| (r, true)),
                    Realserver::Status { config, state } => {
                        realserver::status(&cluster(&config)?, &state).await
                    }
                }
            })
        });
    match done {
        Ok((report, ok)) => {
            print!("{report}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("lvs-agent realserver: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keygen(output: Option<&Path>) -> ExitCode {
    let done = match output {
        Some(path) => lvs_agent::membership::write_new_key_file(path),
        None => lvs_agent::membership::new_key_text().map(|text| print!("{text}")),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lvs-agent keygen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn import_keepalived(
    files: &[String],
    addresses: &[String],
    interfaces: &[String],
    cluster_name: String,
    key_file: String,
    out: Option<&Path>,
) -> ExitCode {
    use lvs_agent::keepalived;
    let result = addresses
        .iter()
        .map(|a| keepalived::parse_address_arg(a))
        .collect::<Result<_, _>>()
        .and_then(|addresses| {
            let interfaces = interfaces
                .iter()
                .map(|a| keepalived::parse_interface_arg(a))
                .collect::<Result<_, _>>()?;
            keepalived::run(&keepalived::Request {
                files: files
                    .iter()
                    .map(|f| keepalived::parse_file_arg(f))
                    .collect(),
                addresses,
                interfaces,
                cluster_name,
                key_file,
            })
        })
        .and_then(|imported| {
            match out {
                Some(dir) => keepalived::write(dir, &imported.files)?,
                None => {
                    for (name, text) in &imported.files {
                        println!("# ==> {name} <==\n{text}");
                    }
                }
            }
            Ok(imported)
        });
    match result {
        Ok(imported) => {
            let names: Vec<&str> = imported.files.iter().map(|(n, _)| n.as_str()).collect();
            if let Some(dir) = out {
                eprintln!(
                    "lvs-agent import-keepalived: wrote {} in {}",
                    names.join(", "),
                    dir.display()
                );
            }
            if !imported.notes.is_empty() {
                eprintln!(
                    "lvs-agent import-keepalived: {} statements not imported or only approximately \
                     (each is a comment in the files):",
                    imported.notes.len()
                );
                for note in &imported.notes {
                    eprintln!("  {note}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lvs-agent import-keepalived: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How long a local command waits for the agent's answer.
const CONTROL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One request to the running agent's control socket; prints the answer.
fn control(socket: &Path, request: Request) -> ExitCode {
    let target = lvs_control::client::Target::Socket(socket.to_owned());
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(lvs_control::client::call(&target, request, CONTROL_TIMEOUT)));
    match answer {
        Ok(Reply::Join(join)) => match lvs_control::table::join(&join) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(reason) => {
                eprintln!("lvs-agent join: {reason}");
                ExitCode::FAILURE
            }
        },
        Ok(Reply::Drain(drain)) => {
            if drain.held.is_empty() {
                println!("holds no VIP group");
            } else {
                println!("holds {}", drain.held.join(" "));
            }
            ExitCode::SUCCESS
        }
        Ok(Reply::Status(status)) => {
            print!("{}", lvs_control::table::lines(&status));
            ExitCode::SUCCESS
        }
        Ok(Reply::Error(reason)) => {
            eprintln!("lvs-agent: {reason}");
            ExitCode::FAILURE
        }
        Ok(other) => {
            eprintln!("lvs-agent: the agent answered another request: {other:?}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("lvs-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn run(config_files: Vec<PathBuf>, log_format: LogFormat) -> ExitCode {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr);
    match log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(lvs_agent::node::run(&config_files)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for file in files {
        match lvs_agent::config::load(file) {
            Ok(config) => println!("{}: ok: {}", file.display(), config.summary()),
            Err(errors) => {
                failed = true;
                for e in errors.iter() {
                    eprintln!("{}: {e}", file.display());
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
