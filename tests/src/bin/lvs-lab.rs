//! Host CLI of the lab (used by deploy/lab/run): boots the VM with a real IPVS
//! kernel and runs scenarios, or gives a shell in it.
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use lvs_tests::scenarios;
use lvs_tests::vm::Lab;

#[derive(Parser)]
#[command(about = "lvs-mesh lab: a qemu VM with IPVS and namespace topologies")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the scenarios.
    List,
    /// Boot once and run the named scenarios in order, printing their reports.
    Run {
        #[arg(required = true)]
        scenarios: Vec<String>,
        /// Every command and its output, also for scenarios that have a short report.
        #[arg(long)]
        verbose: bool,
    },
    /// Boot with the seed topology up and a shell on this terminal.
    Shell,
}

fn main() {
    match real_main() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("lvs-lab: {e:#}");
            std::process::exit(2);
        }
    }
}

fn real_main() -> Result<bool> {
    let lab = || -> Result<Lab> {
        let me = std::env::current_exe().context("locate lvs-lab")?;
        Lab::new(me.with_file_name("lvs-lab-guest"))
    };
    match Cli::parse().command {
        Cmd::List => {
            for s in scenarios::ALL {
                println!("{:16} {}", s.name, s.about);
            }
            Ok(true)
        }
        Cmd::Run { scenarios, verbose } => {
            let names: Vec<&str> = scenarios.iter().map(String::as_str).collect();
            let run = lab()?.run(&names)?;
            run.print(verbose);
            Ok(run.passed())
        }
        Cmd::Shell => lab()?.shell().map(|()| true),
    }
}
