//! A layer-2 segment of network namespaces for tests against real keepalived and
//! lvs-agent processes: namespace `<p>-br` holds bridge `br0` (multicast snooping
//! off, so VRRP reaches every port); each node namespace has `eth0` at
//! 192.0.2.N/24 with MAC 02:00:00:00:00:0N. No route out. Processes are started
//! in their own process group; dropping the lab SIGKILLs every group and deletes
//! the namespaces, even when the test panics. Needs root.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::netns::{add_bridge_ns, add_ns, del_ns, ip, plug, require_program, require_root};

pub const VIP: &str = "192.0.2.100";

pub struct Lab {
    prefix: String,
    nodes: Vec<String>,
    pub dir: PathBuf,
    children: Vec<(String, Child)>,
}

/// A process started in the lab, by its name and process group.
#[derive(Clone, Copy, Debug)]
pub struct Pid(pub u32);

impl Lab {
    /// Panics when not root (namespaces need CAP_SYS_ADMIN).
    pub fn new(tag: &str, nodes: &[&str]) -> Lab {
        require_root();
        let prefix = format!("lvl{}{tag}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        fs::create_dir_all(&dir).expect("lab directory");
        let lab = Lab {
            prefix,
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            dir,
            children: Vec::new(),
        };
        let br = lab.ns("br");
        add_bridge_ns(&br);
        for node in nodes {
            let ns = lab.ns(node);
            add_ns(&ns);
            plug(&ns, &lab.mac(node), &br, &format!("p-{node}"));
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", lab.addr(node)),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        }
        lab
    }

    pub fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.prefix)
    }

    /// 192.0.2.N for the Nth node (1-based, in creation order).
    pub fn addr(&self, node: &str) -> String {
        format!("192.0.2.{}", self.index(node) + 1)
    }

    pub fn mac(&self, node: &str) -> String {
        format!("02:00:00:00:00:{:02x}", self.index(node) + 1)
    }

    fn index(&self, node: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n == node)
            .unwrap_or_else(|| panic!("no node {node} in the lab"))
    }

    /// Starts `program args` in `node`'s namespace, in a new process group,
    /// output appended to `<dir>/<name>.log`.
    pub fn spawn(&mut self, node: &str, name: &str, program: &str, args: &[&str]) -> Pid {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))
            .expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(node), program])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {program} in {node}: {e}"));
        let pid = Pid(child.id());
        self.children.push((name.to_owned(), child));
        pid
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    pub fn log(&self, name: &str) -> String {
        fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// SIGKILL to the process group (`kill -9`, no goodbye) and reap it.
    pub fn kill(&mut self, pid: Pid) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", pid.0)])
            .status();
        if let Some(i) = self.children.iter().position(|(_, c)| c.id() == pid.0) {
            let (_, mut child) = self.children.remove(i);
            let _ = child.wait();
        }
    }

    /// SIGTERM to the process (a clean stop) and wait for it.
    pub fn stop(&mut self, pid: Pid) {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.0.to_string()])
            .status();
        if let Some(i) = self.children.iter().position(|(_, c)| c.id() == pid.0) {
            let (_, mut child) = self.children.remove(i);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            self.children.push((String::new(), child));
            self.kill(pid);
        }
    }

    /// Runs `nft` with `script` in `node`'s namespace.
    pub fn nft(&self, node: &str, script: &str) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns(node), "nft", script])
            .output()
            .expect("run nft");
        assert!(
            out.status.success(),
            "nft {script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Whether `addr` is configured on `node`'s eth0.
    pub fn has_addr(&self, node: &str, addr: &str) -> bool {
        let out = ip(&[
            "-n",
            &self.ns(node),
            "-4",
            "-o",
            "addr",
            "show",
            "dev",
            "eth0",
        ]);
        out.split_whitespace()
            .any(|w| w.split('/').next() == Some(addr))
    }

    /// Starts keepalived (VRRP only) in `node` with the given configuration.
    pub fn keepalived(&mut self, node: &str, name: &str, config: &str) -> Pid {
        require_program("keepalived");
        let conf = self.dir.join(format!("{name}.conf"));
        fs::write(&conf, config).expect("keepalived config");
        let pid = self.dir.join(format!("{name}.pid"));
        let vrrp_pid = self.dir.join(format!("{name}-vrrp.pid"));
        let args = [
            "--dont-fork".to_owned(),
            "--log-console".to_owned(),
            "--log-detail".to_owned(),
            "--vrrp".to_owned(),
            format!("--use-file={}", conf.display()),
            format!("--pid={}", pid.display()),
            format!("--vrrp_pid={}", vrrp_pid.display()),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.spawn(node, name, "keepalived", &args)
    }

    /// Starts `lvs-agent run` in `node` with a node part and the cluster part.
    pub fn agent(&mut self, node: &str, node_toml: &str, cluster_toml: &str) -> Pid {
        let node_file = self.dir.join(format!("{node}.toml"));
        let cluster_file = self.dir.join("cluster.toml");
        // The control socket path is not namespace-scoped: one per agent.
        let socket = self.dir.join(format!("{node}.sock"));
        let node_toml = format!("{node_toml}control_socket = \"{}\"\n", socket.display());
        fs::write(&node_file, node_toml).expect("node config");
        fs::write(&cluster_file, cluster_toml).expect("cluster config");
        let (n, c) = (
            node_file.display().to_string(),
            cluster_file.display().to_string(),
        );
        let name = format!("agent-{node}");
        self.spawn(
            node,
            &name,
            env!("CARGO_BIN_EXE_lvs-agent"),
            &["run", "-c", &n, "-c", &c],
        )
    }

    /// Writes a cluster key file with mode 0600: the agent refuses a key file its
    /// group or others may access.
    pub fn write_key(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, text).expect("write key file");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod 600 key");
        path
    }

    /// A cluster key file shared by the lab's agents.
    pub fn cluster_key(&self) -> String {
        let path = self.dir.join("cluster.key");
        if !path.exists() {
            let key: String = (0..32).map(|i| format!("{:02x}", i * 7 + 3)).collect();
            self.write_key("cluster.key", &key);
        }
        path.display().to_string()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
        }
        for node in self.nodes.iter().map(String::as_str).chain(["br"]) {
            del_ns(&self.ns(node));
        }
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("lab logs kept in {}", self.dir.display());
        }
    }
}

/// keepalived VRRP instance text (IPv4).
pub struct Instance<'a> {
    pub name: &'a str,
    pub vrid: u8,
    pub version: u8,
    pub priority: u8,
    pub advert_int: &'a str,
    pub password: Option<&'a str>,
    pub addresses: &'a [&'a str],
    pub nopreempt: bool,
}

impl Instance<'_> {
    pub fn config(&self) -> String {
        let auth = self.password.map_or(String::new(), |p| {
            format!(
                "    authentication {{\n        auth_type PASS\n        auth_pass {p}\n    }}\n"
            )
        });
        let addresses: String = self
            .addresses
            .iter()
            .map(|a| format!("        {a} dev eth0\n"))
            .collect();
        let preempt = if self.nopreempt {
            "    nopreempt\n"
        } else {
            ""
        };
        format!(
            "vrrp_instance {name} {{\n    state BACKUP\n    interface eth0\n    version {version}\n    \
             virtual_router_id {vrid}\n    priority {priority}\n    advert_int {advert}\n\
             {preempt}{auth}    virtual_ipaddress {{\n{addresses}    }}\n}}\n",
            name = self.name,
            version = self.version,
            vrid = self.vrid,
            priority = self.priority,
            advert = self.advert_int,
        )
    }
}

/// keepalived's global section; `vrrp_garp_master_delay 0`, no script user.
pub fn keepalived_global(router_id: &str) -> String {
    format!("global_defs {{\n    router_id {router_id}\n    vrrp_garp_master_delay 0\n}}\n")
}
