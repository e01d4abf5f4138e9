//! `lvs-agent run` as a scenario's child process (optionally in a network
//! namespace), its log kept in a file whose tail goes into the transcript.
use crate::scenario::Ctx;
use crate::topology::Topology;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Log lines quoted in the transcript when an agent stops.
const LOG_TAIL_LINES: usize = 15;

/// A running `lvs-agent run`; killed (SIGKILL) on drop if not stopped.
#[derive(Debug)]
pub struct Agent {
    child: Child,
    log: PathBuf,
    label: String,
}

impl Agent {
    /// Starts `lvs-agent run -c CONFIG EXTRA...` in `ns` (or the current
    /// namespace), with `RUST_LOG=info` unless the environment says otherwise.
    pub fn start(ctx: &mut Ctx, ns: Option<&str>, config: &Path, extra: &[&str]) -> Result<Agent> {
        let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
        Self::start_logging(ctx, ns, config, extra, &level)
    }

    /// [`Agent::start`] with `RUST_LOG=level`.
    pub fn start_logging(
        ctx: &mut Ctx,
        ns: Option<&str>,
        config: &Path,
        extra: &[&str],
        level: &str,
    ) -> Result<Agent> {
        let bin = ctx.guest_tool().with_file_name("lvs-agent");
        let label = ns.unwrap_or("root").to_string();
        // One file per start: a restarted agent's log does not overwrite the first's.
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        let start = STARTS.fetch_add(1, Ordering::Relaxed);
        let log = std::env::temp_dir().join(format!("lvs-agent-{label}-{start}.log"));
        let out = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let mut argv: Vec<String> = Vec::new();
        if let Some(ns) = ns {
            argv.extend(["ip", "netns", "exec", ns].map(String::from));
        }
        argv.push(bin.to_string_lossy().into_owned());
        argv.extend(["run", "-c"].map(String::from));
        argv.push(config.to_string_lossy().into_owned());
        argv.extend(extra.iter().map(|s| s.to_string()));
        ctx.sh.note(format!(
            "[{label}]# {} > {} 2>&1 &",
            argv.join(" "),
            log.display()
        ));
        // `ip netns exec` execs the agent: the child's pid is the agent's.
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .env("RUST_LOG", level)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("start {}", argv.join(" ")))?;
        Ok(Agent { child, log, label })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the agent has exited (no transcript entry: for polling loops).
    pub fn check_alive_quiet(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("lvs-agent in {} exited: {status}", self.label),
            None => Ok(()),
        }
    }

    /// Fails if the agent has exited (with its log tail in the transcript).
    pub fn check_alive(&mut self, ctx: &mut Ctx) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            self.note_log(ctx);
            bail!("lvs-agent in {} exited early: {status}", self.label);
        }
        Ok(())
    }

    /// `VmRSS` and `VmHWM` of the agent in KiB.
    pub fn memory_kib(&self) -> Result<(u64, u64)> {
        crate::ipvs_bench::memory_kib(&self.pid().to_string())
    }

    /// SIGKILL, as a crash would; the log tail goes into the transcript.
    pub fn kill9(mut self, ctx: &mut Ctx) -> Result<()> {
        ctx.sh.note(format!(
            "# kill -9 {} (lvs-agent in {})",
            self.pid(),
            self.label
        ));
        self.child.kill()?;
        self.child.wait()?;
        self.note_log(ctx);
        Ok(())
    }

    /// SIGTERM, then waits for the exit (SIGKILL after 10 s).
    pub fn stop(mut self, ctx: &mut Ctx) -> Result<()> {
        let pid = self.pid().to_string();
        ctx.sh.run(&format!("kill {pid}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                ctx.sh.note("lvs-agent ignored SIGTERM for 10 s: SIGKILL");
                self.child.kill()?;
                self.child.wait()?;
                break;
            }
            sleep(Duration::from_millis(100));
        }
        self.note_log(ctx);
        Ok(())
    }

    /// The log's last lines into the transcript.
    pub fn note_log(&self, ctx: &mut Ctx) {
        note_log_tail(ctx, &format!("lvs-agent in {}", self.label), &self.log);
    }
}

/// The last [`LOG_TAIL_LINES`] lines of the log at `path` of `what` into the transcript.
pub fn note_log_tail(ctx: &mut Ctx, what: &str, path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    ctx.sh.note(format!(
        "--- {what} log, last {} of {} lines:",
        tail.len(),
        lines.len()
    ));
    for l in tail {
        ctx.sh.note(format!("  | {l}"));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The cluster key the lab's agents share (the seed example files' path), made by
/// `lvs-agent keygen` at its first use in a boot.
pub fn cluster_key(ctx: &mut Ctx) -> Result<&'static str> {
    const KEY_FILE: &str = "/etc/lvs-mesh/cluster.key";
    if !Path::new(KEY_FILE).exists() {
        let agent = ctx.guest_tool().with_file_name("lvs-agent");
        std::fs::create_dir_all("/etc/lvs-mesh")?;
        ctx.sh
            .run(&format!("{} keygen --output {KEY_FILE}", agent.display()))?;
    }
    Ok(KEY_FILE)
}

/// Polls `cond` every 200 ms until it holds (`Ok(true)`) or `timeout` passes
/// (`Ok(false)`).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> Result<bool>) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if cond()? {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        sleep(Duration::from_millis(200));
    }
}

/// An `lvs-lab-guest stream-client` run (see [`crate::stream`]): `conns` connections
/// to `target` from source ports `first_port..`, `rate` rounds a second, for `secs`
/// or until [`Background::stop`]ped.
pub struct Stream<'a> {
    pub target: &'a str,
    pub conns: u16,
    pub secs: u64,
    pub first_port: u16,
    pub rate: u32,
}

/// Processes a scenario started in namespaces (servers, clients); killed on drop.
#[derive(Debug, Default)]
pub struct Background(Vec<Child>);

impl Background {
    /// An echo server (`lvs-lab-guest echo-server`) on every real server of `topo`,
    /// listening on `port`.
    pub fn echo_servers(ctx: &mut Ctx, topo: &Topology, port: u16) -> Result<Background> {
        let tool = ctx.guest_tool().to_string_lossy().into_owned();
        let mut procs = Background::default();
        for i in 1..=topo.spec().real_servers.len() {
            let listen = format!("0.0.0.0:{port}");
            procs.spawn(
                ctx,
                &topo.ns(&format!("rs{i}")),
                &[&tool, "echo-server", &listen],
            )?;
        }
        Ok(procs)
    }

    /// Starts `argv` in `ns` with stdin and stdout piped (for [`Background::stop`]
    /// and [`Background::finish`]) and stderr to the console.
    pub fn spawn(&mut self, ctx: &mut Ctx, ns: &str, argv: &[&str]) -> Result<usize> {
        ctx.sh.note(format!("[{ns}]# {} &", argv.join(" ")));
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {} in {ns}", argv.join(" ")))?;
        self.0.push(child);
        Ok(self.0.len() - 1)
    }

    /// Starts `stream` in namespace `ns`; returns its index.
    pub fn stream(&mut self, ctx: &mut Ctx, ns: &str, stream: &Stream<'_>) -> Result<usize> {
        let tool = ctx.guest_tool().to_string_lossy().into_owned();
        let args = [
            stream.conns.to_string(),
            stream.secs.to_string(),
            stream.first_port.to_string(),
            stream.rate.to_string(),
        ];
        let mut argv = vec![tool.as_str(), "stream-client", stream.target];
        argv.extend(args.iter().map(String::as_str));
        self.spawn(ctx, ns, &argv)
    }

    /// Closes the stdin of process `index` (a stream client stops at its next round),
    /// then [`Background::finish`]es it.
    pub fn stop(&mut self, ctx: &mut Ctx, index: usize) -> Result<String> {
        if let Some(child) = self.0.get_mut(index) {
            drop(child.stdin.take());
        }
        self.finish(ctx, index)
    }

    /// Kills process `index` (one that runs until stopped, e.g. `lvs-cli watch`) and
    /// returns what it wrote.
    pub fn interrupt(&mut self, ctx: &mut Ctx, index: usize) -> Result<String> {
        let child = self
            .0
            .get_mut(index)
            .context("no such background process")?;
        child.kill()?;
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            std::io::Read::read_to_string(&mut stdout, &mut out)?;
        }
        child.wait()?;
        ctx.sh.note(format!("  -> interrupted: {}", out.trim()));
        Ok(out)
    }

    /// Waits for process `index` (from [`Background::spawn`]) and returns its stdout.
    pub fn finish(&mut self, ctx: &mut Ctx, index: usize) -> Result<String> {
        let child = self
            .0
            .get_mut(index)
            .context("no such background process")?;
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            std::io::Read::read_to_string(&mut stdout, &mut out)?;
        }
        let status = child.wait()?;
        ctx.sh.note(format!("  -> {status}: {}", out.trim()));
        if !status.success() {
            bail!("background process {index} exited {status}");
        }
        Ok(out)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
