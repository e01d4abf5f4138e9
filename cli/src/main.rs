//! `lvs-cli`: the operator's view of an lvs-mesh cluster, from any node. It calls the
//! local agent's root-only socket, or any agent's QUIC control API (`--node`) with an
//! operator certificate from the cluster CA, which `lvs-cli cert` makes.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory as _, Parser, Subcommand};
use lvs_control::client::{self, Target};
use lvs_control::pki::{self, Role};
use lvs_control::quic::TlsFiles;
use lvs_control::table;
use lvs_proto::v1::{
    control_reply::Reply, control_request::Request, ConfigApplyRequest, ConfigGetRequest,
    ConnectionsRequest, DaemonsRequest, DrainRequest, JoinRequest, MoveRequest, ServicesRequest,
    StatusRequest,
};

#[derive(Parser)]
#[command(
    name = "lvs-cli",
    version,
    about = "Operator CLI for an lvs-mesh cluster",
    after_help = "Exit status: 0 done; 1 the agent refused or failed the request, could not be \
                  reached, or did not answer in time (the reason is on stderr); 2 bad usage."
)]
struct Cli {
    #[command(flatten)]
    call: Call,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Call {
    /// Call this agent's QUIC control API (`[node] control_listen`, e.g.
    /// 192.0.2.1:7947) with the certificate below; without it, the local agent's socket.
    #[arg(long, value_name = "ADDR", global = true)]
    node: Option<SocketAddr>,
    /// The local agent's control socket (`[node] control_socket`).
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/run/lvs-agent.sock",
        global = true
    )]
    socket: PathBuf,
    /// The cluster CA certificate (with --node).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/lvs-mesh/tls/ca.pem",
        global = true
    )]
    ca: PathBuf,
    /// This operator's certificate, issued by the cluster CA (with --node).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/lvs-mesh/tls/operator.pem",
        global = true
    )]
    cert: PathBuf,
    /// Its private key (with --node).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/lvs-mesh/tls/operator.key",
        global = true
    )]
    key: PathBuf,
    /// Seconds to wait for the agent's answer.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, global = true)]
    timeout: f64,
    /// Print the reply as JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// The cluster at a glance: members, VIP groups, services, warnings.
    Status,
    /// Members: state, gossip address, sync id, sync daemons running, groups held, cluster
    /// document, config digest.
    Members,
    /// VIP groups: VRID, owner, this node's VRRP state and priority, master, addresses.
    Vips,
    /// The called node's IPVS services with weights, connection counts and counters
    /// (`ipvsadm -L -n --stats --exact`).
    Services,
    /// The called node's IPVS connection table (`ipvsadm -L -n -c`).
    Conns,
    /// The called node's connection-sync daemons (`ipvsadm -l --daemon`).
    Daemons,
    /// Follow the called node's view of the cluster: ownership changes (acquired,
    /// released, elected owner), members up or down and its real servers' verdicts, one
    /// line each, until interrupted.
    Watch,
    /// Ask the agent to contact more gossip peers (`host:port`), joining it to a
    /// cluster; prints those that answered within 5 s, fails when none did.
    Join {
        #[arg(required = true, value_name = "PEER")]
        peers: Vec<String>,
    },
    /// Drain a node (default: the called one): it hands every VIP group it holds to a
    /// ready undrained node by planned hand-overs and takes none while drained. Another
    /// node is called by the called agent over QUIC.
    Drain {
        #[arg(value_name = "NODE")]
        target: Option<String>,
    },
    /// Undrain a node (default: the called one): eligible for VIP groups again.
    Undrain {
        #[arg(value_name = "NODE")]
        target: Option<String>,
    },
    /// Move a VIP group to a node now, by a planned hand-over; the node keeps it (over
    /// priorities) while it runs, until the group is moved again. Waits until the node
    /// holds it (at most 5 s).
    Move {
        #[arg(value_name = "GROUP")]
        group: String,
        #[arg(value_name = "NODE")]
        to: String,
    },
    /// The cluster document the called node runs.
    #[command(subcommand)]
    Config(Config),
    /// Give a cluster document (the cluster part: [cluster], [sync], [[vip_group]],
    /// [[service]]) to the called node: it validates it with its node part, applies
    /// and stores it as the next version, and every peer fetches and applies it.
    /// An invalid document is refused with its errors and changes nothing anywhere.
    Apply {
        /// The document; `-` reads standard input.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
    },
    /// The cluster CA and its certificates.
    #[command(subcommand)]
    Cert(Cert),
    /// Print a shell completion script (e.g. `lvs-cli completions bash >
    /// /etc/bash_completion.d/lvs-cli`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), generated from these definitions.
    Man,
}

#[derive(Subcommand)]
enum Config {
    /// Print it: a header line with its version, then its text, as stored in
    /// `[node] cluster_store` (fit for `apply -f` after an edit).
    Get,
}

#[derive(Subcommand)]
enum Cert {
    /// Create the cluster CA: DIR/ca.pem and DIR/ca.key (mode 0600; keep it offline).
    Init {
        /// The cluster's name, written in the CA's subject.
        #[arg(long, default_value = "lvs-mesh")]
        cluster: String,
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
    /// Issue a certificate: OUT/NAME.pem and OUT/NAME.key (mode 0600).
    Issue {
        /// The CA directory (ca.pem, ca.key).
        #[arg(long, value_name = "DIR", default_value = ".")]
        ca_dir: PathBuf,
        /// The node id (with --node-cert) or the operator's name.
        #[arg(value_name = "NAME")]
        name: String,
        /// A node certificate (serves the control API) instead of an operator's.
        #[arg(long)]
        node_cert: bool,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 825)]
        days: u64,
        /// Where to write it; default the CA directory.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let Cli { call, command } = Cli::parse();
    let result = match command {
        Command::Status => read(&call, table::status_table),
        Command::Members => read(&call, table::members),
        Command::Vips => read(&call, table::vips),
        Command::Services => {
            send(&call, Request::Services(ServicesRequest {})).and_then(|reply| match reply {
                Reply::Services(r) if call.json => json(&r),
                Reply::Services(r) => Ok(table::services(&r)),
                other => unexpected(&other),
            })
        }
        Command::Conns => {
            send(&call, Request::Connections(ConnectionsRequest {})).and_then(|reply| match reply {
                Reply::Connections(r) if call.json => json(&r),
                Reply::Connections(r) => Ok(table::connections(&r)),
                other => unexpected(&other),
            })
        }
        Command::Daemons => {
            send(&call, Request::Daemons(DaemonsRequest {})).and_then(|reply| match reply {
                Reply::Daemons(r) if call.json => json(&r),
                Reply::Daemons(r) => Ok(table::daemons(&r)),
                other => unexpected(&other),
            })
        }
        Command::Join { peers } => {
            send(&call, Request::Join(JoinRequest { peers })).and_then(|reply| match reply {
                Reply::Join(join) if call.json => json(&join),
                Reply::Join(join) => table::join(&join).map_err(anyhow::Error::msg),
                other => unexpected(&other),
            })
        }
        Command::Watch => watch(&call),
        Command::Drain { target } => drain(&call, true, target),
        Command::Undrain { target } => drain(&call, false, target),
        Command::Move { group, to } => move_group(&call, group, to),
        Command::Config(Config::Get) => config_get(&call),
        Command::Apply { file } => apply(&call, &file),
        Command::Cert(cert) => cert_command(cert),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "lvs-cli", &mut out);
            String::from_utf8(out).map_err(anyhow::Error::from)
        }
        Command::Man => {
            let mut out = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut out)
                .map_err(anyhow::Error::from)
                .and_then(|()| String::from_utf8(out).map_err(anyhow::Error::from))
        }
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lvs-cli: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn target(call: &Call) -> Target {
    match call.node {
        Some(addr) => Target::Quic {
            addr,
            tls: TlsFiles {
                ca: call.ca.clone(),
                cert: call.cert.clone(),
                key: call.key.clone(),
            },
        },
        None => Target::Socket(call.socket.clone()),
    }
}

fn send(call: &Call, request: Request) -> anyhow::Result<Reply> {
    anyhow::ensure!(
        call.timeout.is_finite() && call.timeout > 0.0,
        "--timeout: must be a positive number of seconds"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(client::call(
        &target(call),
        request,
        Duration::from_secs_f64(call.timeout),
    ))
}

/// A status read, printed by `render` or as JSON.
fn read(
    call: &Call,
    render: impl Fn(&lvs_proto::v1::StatusReply) -> String,
) -> anyhow::Result<String> {
    match send(call, Request::Status(StatusRequest {}))? {
        Reply::Status(status) if call.json => json(&status),
        Reply::Status(status) => Ok(render(&status)),
        other => unexpected(&other),
    }
}

fn watch(call: &Call) -> anyhow::Result<String> {
    use std::io::Write as _;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let json = call.json;
    runtime.block_on(client::watch(&target(call), |event| {
        let line = if json {
            serde_json::to_string(&event)
                .map(|s| s + "\n")
                .unwrap_or_default()
        } else {
            table::event(&event)
        };
        let mut out = std::io::stdout().lock();
        // A closed stdout (the reader went away) ends the watch.
        out.write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .is_ok()
    }))?;
    Ok(String::new())
}

fn drain(call: &Call, drain: bool, node: Option<String>) -> anyhow::Result<String> {
    let node = node.unwrap_or_default();
    match send(call, Request::Drain(DrainRequest { drain, node }))? {
        Reply::Drain(reply) if call.json => json(&reply),
        Reply::Drain(reply) if reply.held.is_empty() => Ok("holds no VIP group\n".into()),
        Reply::Drain(reply) => Ok(format!("holds {}\n", reply.held.join(" "))),
        other => unexpected(&other),
    }
}

fn move_group(call: &Call, group: String, node: String) -> anyhow::Result<String> {
    match send(call, Request::MoveGroup(MoveRequest { group, node }))? {
        Reply::Moved(r) if call.json => json(&r),
        Reply::Moved(r) => Ok(format!("{} held by {}\n", r.group, r.holder)),
        other => unexpected(&other),
    }
}

fn config_get(call: &Call) -> anyhow::Result<String> {
    match send(call, Request::ConfigGet(ConfigGetRequest {}))? {
        Reply::Config(doc) if call.json => json(&doc),
        Reply::Config(doc) => Ok(format!(
            "# lvs-mesh cluster document version {} (digest {:016x})\n{}",
            doc.version, doc.digest, doc.text
        )),
        other => unexpected(&other),
    }
}

fn apply(call: &Call, file: &Path) -> anyhow::Result<String> {
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).map_err(|e| anyhow::anyhow!("stdin: {e}"))?
    } else {
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
    };
    match send(call, Request::ConfigApply(ConfigApplyRequest { text }))? {
        Reply::Applied(r) if call.json => json(&r),
        Reply::Applied(r) => Ok(format!(
            "applied as version {} (digest {:016x}); the peers fetch it\n",
            r.version, r.digest
        )),
        other => unexpected(&other),
    }
}

fn json(value: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

fn unexpected(reply: &Reply) -> anyhow::Result<String> {
    anyhow::bail!("the agent answered another request: {reply:?}")
}

fn cert_command(cert: Cert) -> anyhow::Result<String> {
    match cert {
        Cert::Init { cluster, dir } => {
            let (cert, key) = pki::write(&dir, "ca", &pki::new_ca(&cluster)?)?;
            Ok(format!(
                "CA certificate {}\nCA key {} (mode 0600: keep it off the directors)\n",
                cert.display(),
                key.display()
            ))
        }
        Cert::Issue {
            ca_dir,
            name,
            node_cert,
            days,
            out,
        } => {
            let (ca_cert, ca_key) = pki::read_ca(&ca_dir)?;
            let role = if node_cert {
                Role::Node
            } else {
                Role::Operator
            };
            let issued = pki::issue(&ca_cert, &ca_key, &name, role, days)?;
            let out: &Path = out.as_deref().unwrap_or(&ca_dir);
            let (cert, key) = pki::write(out, &name, &issued)?;
            Ok(format!(
                "{} certificate {}\nkey {} (mode 0600)\n",
                if node_cert { "node" } else { "operator" },
                cert.display(),
                key.display()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn node_arguments_do_not_clash_with_the_global_node_option() {
        let cli = Cli::try_parse_from(["lvs-cli", "--node", "192.0.2.1:7947", "drain", "lb2"])
            .expect("drain NODE with --node");
        assert!(matches!(cli.command, Command::Drain { target: Some(t) } if t == "lb2"));
        assert_eq!(cli.call.node, Some("192.0.2.1:7947".parse().unwrap()));
        let cli = Cli::try_parse_from(["lvs-cli", "move", "g1", "lb3", "--node", "192.0.2.1:7947"])
            .expect("move GROUP NODE with --node");
        assert!(matches!(cli.command, Command::Move { group, to } if group == "g1" && to == "lb3"));
    }

    #[test]
    fn the_man_page_and_completions_cover_every_command() {
        let mut man = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut man)
            .unwrap();
        let man = String::from_utf8(man).unwrap();
        let mut bash = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "lvs-cli",
            &mut bash,
        );
        let bash = String::from_utf8(bash).unwrap();
        for command in [
            "status", "members", "vips", "services", "conns", "daemons", "watch", "join", "drain",
            "config", "apply", "move", "cert",
        ] {
            assert!(man.contains(command), "man page lacks {command}");
            assert!(bash.contains(command), "completions lack {command}");
        }
    }
}
