//! Runs inside the lab VM (and, for `fetch`, in any namespace on a host):
//! - `run`: the scenarios named on the kernel command line (started by /init);
//! - `shell`: builds the seed topology and leaves it up for a person's shell;
//! - `fetch ADDR:PORT N FIRST_SOURCE_PORT`: N fresh-connection HTTP fetches from
//!   source ports FIRST_SOURCE_PORT.., prints a summary;
//! - `echo-server LISTEN_ADDR:PORT`: echoes every TCP connection until killed;
//! - `stream-client ADDR:PORT CONNS SECONDS FIRST_SOURCE_PORT RATE`: keeps CONNS
//!   connections exchanging RATE messages a second each for SECONDS or until its
//!   stdin ends, prints a summary;
//! - `ipvs-bench SERVICES DESTS`: the IPVS benchmark (see `lvs_tests::ipvs_bench`).
use anyhow::{bail, Context, Result};
use lvs_tests::fetch::fetch_many;
use lvs_tests::shell::Shell;
use lvs_tests::topology::{Topology, TopologySpec};
use lvs_tests::{guest, ipvs_bench, scenario, servers, stream};
use std::net::SocketAddr;
use std::time::Duration;

fn main() {
    if let Err(e) = real_main() {
        eprintln!("lvs-lab-guest: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let me = std::env::current_exe().context("locate lvs-lab-guest")?;
    match args[..] {
        ["run"] => {
            scenario::capture_panics();
            guest::run(&me)
        }
        ["shell"] => shell_topology(&me),
        ["fetch", addr, count, first_port] => {
            let addr: SocketAddr = addr
                .parse()
                .with_context(|| format!("fetch: bad ADDR:PORT {addr:?}"))?;
            let count: u16 = count
                .parse()
                .with_context(|| format!("fetch: bad COUNT {count:?}"))?;
            let first: u16 = first_port
                .parse()
                .with_context(|| format!("fetch: bad FIRST_SOURCE_PORT {first_port:?}"))?;
            print!(
                "{}",
                fetch_many(addr, count, first, Duration::from_secs(5))?
            );
            Ok(())
        }
        ["echo-server", listen] => stream::echo_server(parse(listen, "LISTEN_ADDR:PORT")?),
        ["listen-many", addr, first_port, count, tally] => {
            let accepted = servers::listen_many(
                parse(addr, "ADDRESS")?,
                parse(first_port, "FIRST_PORT")?,
                parse(count, "COUNT")?,
                std::path::Path::new(tally),
                &stream::stop_on_stdin_eof(),
            )?;
            println!("accepted={accepted}");
            Ok(())
        }
        ["tls-server", listen] => servers::tls_server(parse(listen, "LISTEN_ADDR:PORT")?, None),
        ["tls-server", listen, cert, key] => servers::tls_server(
            parse(listen, "LISTEN_ADDR:PORT")?,
            Some((std::path::Path::new(cert), std::path::Path::new(key))),
        ),
        ["dns-server", listen, name, addr] => servers::dns_server(
            parse(listen, "LISTEN_ADDR:PORT")?,
            name,
            parse(addr, "IPV4_ADDRESS")?,
        ),
        ["stream-client", addr, conns, secs, first_port, rate] => {
            let summary = stream::stream_client(
                parse(addr, "ADDR:PORT")?,
                parse(conns, "CONNS")?,
                Duration::from_secs(parse(secs, "SECONDS")?),
                parse(first_port, "FIRST_SOURCE_PORT")?,
                parse(rate, "RATE")?,
                &stream::stop_on_stdin_eof(),
            )?;
            println!("{summary}");
            Ok(())
        }
        ["ipvs-bench", services, dests] => {
            print!(
                "{}",
                ipvs_bench::with_planner(
                    parse(services, "SERVICES")?,
                    parse(dests, "DESTS")?,
                    &std::env::temp_dir()
                )?
            );
            Ok(())
        }
        _ => bail!(
            "usage: lvs-lab-guest run | shell | fetch ADDR:PORT COUNT FIRST_SOURCE_PORT\n\
             | echo-server LISTEN_ADDR:PORT | stream-client ADDR:PORT CONNS SECONDS FIRST_SOURCE_PORT RATE\n\
             | tls-server LISTEN_ADDR:PORT [CERT_PEM KEY_PEM] | dns-server LISTEN_ADDR:PORT NAME IPV4_ADDRESS\n\
             | listen-many ADDRESS FIRST_PORT COUNT TALLY_FILE\n\
             | ipvs-bench SERVICES DESTS"
        ),
    }
}

/// `value` as a `T`, or an error naming the argument.
fn parse<T: std::str::FromStr>(value: &str, what: &str) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    value
        .parse()
        .with_context(|| format!("bad {what} {value:?}"))
}

/// Builds the seed topology and leaves it running (the shell's session owns it).
fn shell_topology(me: &std::path::Path) -> Result<()> {
    let mut sh = Shell::new(false);
    let topo = Topology::build(TopologySpec::seed(), me, &mut sh)?;
    let spec = topo.spec().clone();
    std::mem::forget(topo);
    let nodes: Vec<String> = spec
        .nodes()
        .iter()
        .map(|(n, a)| format!("{n}={a}"))
        .collect();
    let vips: Vec<String> = spec.vips.iter().map(|v| v.to_string()).collect();
    println!(
        "\nlvs-lab shell: seed topology up (namespaces on bridge br0 in netns sw):\n  {}\n  VIPs {} on rs*/lo; no VIP on any director yet. Try:\n\
         ip -n lb1 addr add 10.0.0.10/32 dev eth0\n\
         ip netns exec lb1 ipvsadm -A -t 10.0.0.10:80 -s wrr\n\
         ip netns exec lb1 ipvsadm -a -t 10.0.0.10:80 -r 172.16.0.100:80 -g -w 1\n\
         ip netns exec lb1 ipvsadm -a -t 10.0.0.10:80 -r 172.16.0.101:80 -g -w 2\n\
         ip netns exec client lvs-lab-guest fetch 10.0.0.10:80 30 20000\n\
         ip netns exec lb1 ipvsadm -L -n --stats\n\
         Binaries: ipvsadm keepalived tcpdump nft in PATH, lvs-agent lvs-cli in /lvs/bin. exit powers off.\n",
        nodes.join(" "),
        vips.join(" ")
    );
    Ok(())
}
