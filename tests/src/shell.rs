//! Runs commands (optionally inside a network namespace) and keeps a transcript of
//! each command and its output, which becomes a scenario report's `output`.
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::process::Command;

/// What a command did.
#[derive(Debug, Clone)]
pub struct Ran {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// A command runner with a transcript. With `echo`, every transcript line is also
/// written to stderr as it happens (in the VM that is the console, so a hung VM's
/// console tail shows how far a scenario got).
#[derive(Debug, Default)]
pub struct Shell {
    transcript: String,
    echo: bool,
}

impl Shell {
    pub fn new(echo: bool) -> Self {
        Shell {
            transcript: String::new(),
            echo,
        }
    }

    /// Runs `cmd` (split on whitespace: no quoting) in the current network
    /// namespace; an error if it cannot start or exits non-zero.
    pub fn run(&mut self, cmd: &str) -> Result<String> {
        self.checked(None, &words(cmd))
    }

    /// Like [`Shell::run`], inside network namespace `ns` (`ip netns exec`).
    pub fn run_in(&mut self, ns: &str, cmd: &str) -> Result<String> {
        self.checked(Some(ns), &words(cmd))
    }

    /// Runs `argv` (in `ns` if given) and returns what it did, whatever its exit
    /// code; an error only if it cannot be started.
    pub fn exec(&mut self, ns: Option<&str>, argv: &[&str]) -> Result<Ran> {
        let (program, args) = argv.split_first().context("empty command")?;
        let mut command = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        };
        let out = command
            .args(args)
            .output()
            .with_context(|| format!("cannot start {program}"))?;
        let ran = Ran {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        let prompt = ns
            .map(|n| format!("[{n}]# "))
            .unwrap_or_else(|| "# ".into());
        let mut record = format!("{prompt}{}\n", argv.join(" "));
        for text in [&ran.stdout, &ran.stderr] {
            record.push_str(text);
            if !text.is_empty() && !text.ends_with('\n') {
                record.push('\n');
            }
        }
        if !ran.success() {
            let _ = writeln!(record, "  -> exit {:?}", ran.code);
        }
        self.append(&record);
        Ok(ran)
    }

    /// Adds a headline: a line of the short report (`deploy/lab/run demo` without
    /// `--verbose` prints only these, see [`headlines`]).
    pub fn say(&mut self, text: impl AsRef<str>) {
        self.note(format!("{HEADLINE}{}", text.as_ref()));
    }

    /// Adds a line of commentary (a measurement, a check) to the transcript.
    pub fn note(&mut self, text: impl AsRef<str>) {
        let mut line = text.as_ref().to_string();
        line.push('\n');
        self.append(&line);
    }

    pub fn transcript(&self) -> &str {
        &self.transcript
    }

    pub fn into_transcript(self) -> String {
        self.transcript
    }

    fn checked(&mut self, ns: Option<&str>, argv: &[&str]) -> Result<String> {
        let ran = self.exec(ns, argv)?;
        if !ran.success() {
            bail!(
                "`{}`{} exited {:?}: {}",
                argv.join(" "),
                ns.map(|n| format!(" in netns {n}")).unwrap_or_default(),
                ran.code,
                ran.stderr.trim()
            );
        }
        Ok(ran.stdout)
    }

    fn append(&mut self, text: &str) {
        if self.echo {
            eprint!("{text}");
        }
        self.transcript.push_str(text);
    }
}

/// Marks a transcript line as a headline ([`Shell::say`]).
const HEADLINE: &str = "» ";

/// The headlines of a transcript, unmarked; empty when it has none.
pub fn headlines(transcript: &str) -> Vec<&str> {
    transcript
        .lines()
        .filter_map(|l| l.strip_prefix(HEADLINE))
        .collect()
}

fn words(cmd: &str) -> Vec<&str> {
    cmd.split_whitespace().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_commands_output_and_failures() {
        let mut sh = Shell::new(false);
        assert_eq!(sh.run("echo hello   world").unwrap(), "hello world\n");
        let err = sh.run("false").unwrap_err();
        assert!(err.to_string().contains("`false` exited Some(1)"), "{err}");
        sh.note("a note");
        assert_eq!(
            sh.transcript(),
            "# echo hello world\nhello world\n# false\n  -> exit Some(1)\na note\n"
        );
        assert!(sh.run("").is_err());
        assert!(headlines(sh.transcript()).is_empty());
        sh.say("the gist");
        assert_eq!(headlines(sh.transcript()), ["the gist"]);
    }
}
