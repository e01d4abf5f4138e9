//! `lvs-agent`: the lvs-mesh director agent.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

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
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::CheckConfig { files } => check_config(&files),
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
