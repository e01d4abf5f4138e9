//! A lab of N network namespaces (`eth0` = 192.0.2.i/24 and 2001:db8::i/64) on one
//! bridge that lives in a namespace of its own, with no route out, each running a real
//! `lvs-agent run`. Duplicate address detection is off in the nodes: IPv6 VRRP goes out
//! from the link-local address, usable at once then.
//! Everything (processes, namespaces, files) is cleaned up on drop, even on panic.

use std::collections::BTreeSet;
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::netns::{add_bridge_ns, add_ns, del_ns, ip, plug, require_root};

pub struct Lab {
    prefix: String,
    pub dir: PathBuf,
    nodes: usize,
    agents: Vec<Option<Child>>,
}

impl Lab {
    /// Panics when not root (namespaces need CAP_SYS_ADMIN).
    pub fn new(tag: &str, nodes: usize) -> Lab {
        require_root();
        let prefix = format!("lvsc-{}-{tag}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        fs::create_dir_all(&dir).expect("lab dir");
        let mut lab = Lab {
            prefix,
            dir,
            nodes: 0,
            agents: Vec::new(),
        };
        add_bridge_ns(&lab.bridge_ns());
        for _ in 0..nodes {
            lab.add_node();
        }
        lab
    }

    /// The namespace holding `br0`.
    pub fn bridge_ns(&self) -> String {
        format!("{}-br", self.prefix)
    }

    /// Namespace of node `i` (1-based).
    pub fn ns(&self, i: usize) -> String {
        format!("{}-{i}", self.prefix)
    }

    /// Adds node `n + 1`, wired to the bridge, with no agent yet.
    pub fn add_node(&mut self) -> usize {
        self.nodes += 1;
        self.agents.push(None);
        let i = self.nodes;
        add_ns(&self.ns(i));
        self.wire(i, &format!("02:00:00:00:00:{i:02x}"));
        i
    }

    /// Deletes node `i`'s eth0 (its bridge port goes with it).
    pub fn remove_link(&self, i: usize) {
        ip(&["-n", &self.ns(i), "link", "del", "eth0"]);
    }

    /// Creates node `i`'s eth0 again, with MAC `mac` (so a new IPv6 link-local), its
    /// addresses, and up.
    pub fn recreate_link(&self, i: usize, mac: &str) {
        self.wire(i, mac);
    }

    fn wire(&self, i: usize, mac: &str) {
        let (ns, br) = (self.ns(i), self.bridge_ns());
        plug(&ns, mac, &br, &format!("p{i}"));
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("192.0.2.{i}/24"),
            "dev",
            "eth0",
        ]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("2001:db8::{i}/64"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
    }

    /// Sets node `i`'s eth0 up or down.
    pub fn set_link(&self, i: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.ns(i), "link", "set", "eth0", state]);
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, text).expect("write lab file");
        path
    }

    /// Writes a cluster key file with mode 0600: the agent refuses a key file its
    /// group or others may access.
    pub fn write_key(&self, name: &str, text: &str) -> PathBuf {
        let path = self.write(name, text);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod 600 key");
        path
    }

    pub fn socket(&self, i: usize) -> PathBuf {
        self.dir.join(format!("lb{i}.sock"))
    }

    pub fn log(&self, i: usize) -> PathBuf {
        self.dir.join(format!("lb{i}.log"))
    }

    /// Starts `lvs-agent run -c NODE -c CLUSTER` in node `i`'s namespace, logging
    /// (appending) to `lb{i}.log`.
    pub fn start(&mut self, i: usize, node: &Path, cluster: &Path) {
        self.start_with(i, node, cluster, &[]);
    }

    /// [`Lab::start`] with more `lvs-agent run` arguments (e.g. `--log-format json`).
    pub fn start_with(&mut self, i: usize, node: &Path, cluster: &Path, extra: &[&str]) {
        self.start_files(i, &[node, cluster], extra);
    }

    /// `lvs-agent run -c FILE...` and `extra` in node `i`'s namespace (a node file
    /// alone: the node receives the cluster document).
    pub fn start_files(&mut self, i: usize, files: &[&Path], extra: &[&str]) {
        self.start_env(i, files, extra, &[]);
    }

    /// [`Lab::start_files`] with more environment variables (e.g. `NOTIFY_SOCKET`).
    pub fn start_env(&mut self, i: usize, files: &[&Path], extra: &[&str], env: &[(&str, &str)]) {
        let mut args = vec!["run".to_owned()];
        for f in files {
            args.push("-c".to_owned());
            args.push(f.display().to_string());
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        self.start_program(i, Path::new(env!("CARGO_BIN_EXE_lvs-agent")), &args, env);
    }

    /// Starts `program args` as node `i`'s agent (an installed binary, say).
    pub fn start_program(
        &mut self,
        i: usize,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
    ) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(i))
            .expect("agent log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(i)])
            .arg(program)
            .args(args)
            .env("RUST_LOG", "info,lvs_agent::cluster=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start lvs-agent");
        self.agents[i - 1] = Some(child);
    }

    /// Sends `signal` (e.g. "HUP") to node `i`'s agent; `ip netns exec` execs it, so the
    /// child is the agent itself.
    pub fn signal(&self, i: usize, signal: &str) {
        let child = self.agents[i - 1].as_ref().expect("agent running");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} lb{i}");
    }

    /// Whether node `i`'s agent is still running.
    pub fn running(&mut self, i: usize) -> bool {
        self.agents[i - 1]
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// SIGKILL: a crash, nothing is released.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.agents[i - 1].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs the agent binary with `args` (e.g. `join`, `status`) outside any namespace.
    pub fn agent_cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_lvs-agent"))
            .args(args)
            .output()
            .expect("run lvs-agent")
    }

    /// Addresses of `net` (a prefix such as "198.51.100." or "2001:db8:100:") on node
    /// `i`'s eth0.
    pub fn addrs_in(&self, i: usize, net: &str) -> BTreeSet<IpAddr> {
        let family = if net.contains(':') { "-6" } else { "-4" };
        let out = ip(&[
            "-n",
            &self.ns(i),
            family,
            "-o",
            "addr",
            "show",
            "dev",
            "eth0",
        ]);
        // Each line: `N: eth0 inet ADDR/LEN brd ...`; only the word after inet/inet6.
        out.lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                words.find(|w| *w == "inet" || *w == "inet6")?;
                words.next()?.split('/').next()?.parse().ok()
            })
            .filter(|a: &IpAddr| a.to_string().starts_with(net))
            .collect()
    }

    /// Runs `nft` with `script` in node `i`'s namespace.
    pub fn nft(&self, i: usize, script: &str) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns(i), "nft", script])
            .output()
            .expect("run nft");
        assert!(
            out.status.success(),
            "nft {script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// Node `i`'s whole log.
    pub fn log_text(&self, i: usize) -> String {
        fs::read_to_string(self.log(i)).unwrap_or_default()
    }

    /// `lvs-agent status` of node `i`; empty when the agent does not answer.
    pub fn status(&self, i: usize) -> String {
        let socket = self.socket(i);
        let out = self.agent_cli(&["status", "--socket", socket.to_str().expect("utf-8")]);
        if out.status.success() {
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            String::new()
        }
    }

    /// Every agent's log, for a failure message.
    pub fn logs(&self) -> String {
        (1..=self.nodes)
            .map(|i| {
                let text = self.log_text(i);
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- lb{i} (last 40 lines)\n{}\n", tail.join("\n"))
            })
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for i in 1..=self.nodes {
            self.kill(i);
        }
        for i in 1..=self.nodes {
            del_ns(&self.ns(i));
        }
        del_ns(&self.bridge_ns());
        if std::env::var_os("LVS_KEEP_LAB").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
