//! keepalived.conf statements of every director → one cluster file and one node file
//! per director. Each director's file gives its own view: its priority per VRRP
//! instance, its interface and address; the instances and virtual servers must agree
//! between the directors (they become the one cluster part), or the import fails
//! naming both places. Every statement is accounted for: imported, imported
//! approximately or not imported, the last two with a comment in the output that
//! names the keyword, where it was and why (`keywords::KEYWORDS`).

use super::keywords::{self, Outcome, Section};
use super::syntax::{Location, Stmt};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

/// One director's keepalived config, read.
pub struct Director {
    /// The node id it gets.
    pub id: String,
    pub stmts: Vec<Stmt>,
}

/// What the import needs besides the files.
pub struct Options {
    pub cluster_name: String,
    /// Node addresses by director id, for directors whose config names none.
    pub addresses: BTreeMap<String, IpAddr>,
    /// Node interfaces by director id, over what the config suggests.
    pub interfaces: BTreeMap<String, String>,
    pub key_file: String,
}

/// The files an import writes: (file name, text).
#[derive(Debug)]
pub struct Imported {
    pub files: Vec<(String, String)>,
    /// Statements not imported or imported approximately, one line each.
    pub notes: Vec<String>,
}

/// Malformed or contradictory input: where (when known), and what.
#[derive(Debug, PartialEq, Eq)]
pub struct ImportError {
    pub at: Option<Location>,
    pub message: String,
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.at {
            Some(at) => write!(f, "{at}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ImportError {}

fn err<T>(at: &Location, message: impl Into<String>) -> Result<T, ImportError> {
    Err(ImportError {
        at: Some(at.clone()),
        message: message.into(),
    })
}

/// keepalived's `persistence_timeout` without a value (keepalived.conf(5)).
const DEFAULT_PERSISTENCE: &str = "360";

pub fn import(directors: &[Director], options: &Options) -> Result<Imported, ImportError> {
    let mut notes = Vec::new();
    let mut views = Vec::new();
    for d in directors {
        let mut view = View::read(d)?;
        if let Some(iface) = options.interfaces.get(&d.id) {
            view.interface = Some(iface.clone());
        }
        if view.interface.is_none() {
            return Err(ImportError {
                at: None,
                message: format!(
                    "director {}: its config names no interface (no vrrp_instance or \
                     lvs_sync_daemon): give it with --interface {}=NAME",
                    d.id, d.id
                ),
            });
        }
        views.push(view);
    }
    let mut groups = merge_groups(&views)?;
    let services = merge_services(&views)?;
    for (vip, at) in unheld(&groups, &services) {
        let group = group_for(vip, &at, &groups);
        notes.push(format!("{}: {}", at, group.comments[0]));
        groups.push(group);
    }
    let services: Vec<String> = services.into_iter().map(|(text, _, _)| text).collect();
    let sync = merge_sync(&views)?;
    let mut files = Vec::new();
    files.push((
        "cluster.toml".to_owned(),
        cluster_file(options, &views, &groups, &services, sync.as_ref()),
    ));
    let addresses: Vec<(String, IpAddr)> = views
        .iter()
        .map(|v| {
            let address = options
                .addresses
                .get(&v.id)
                .copied()
                .or(v.address.as_ref().map(|(a, _)| *a));
            address
                .map(|a| (v.id.clone(), a))
                .ok_or_else(|| ImportError {
                    at: None,
                    message: format!(
                        "director {}: its config names no address of its own (no unicast_src_ip \
                     or mcast_src_ip): give it with --address {}=ADDRESS",
                        v.id, v.id
                    ),
                })
        })
        .collect::<Result<_, _>>()?;
    for (i, v) in views.iter().enumerate() {
        let syncid = match v.sync.as_ref().and_then(|s| s.id) {
            Some(id) => id,
            None => u8::try_from(i + 1).map_err(|_| ImportError {
                at: None,
                message: "more than 255 directors: syncids run out".into(),
            })?,
        };
        files.push((
            format!("{}.toml", v.id),
            node_file(v, syncid, &addresses, options),
        ));
    }
    for v in &views {
        notes.extend(v.notes.iter().map(|n| format!("{}: {n}", v.id)));
    }
    Ok(Imported { files, notes })
}

/// One director's reading of its config.
struct View {
    id: String,
    /// Its node interface: the lvs_sync_daemon's, else its first instance's.
    interface: Option<String>,
    address: Option<(IpAddr, Location)>,
    sync: Option<SyncDaemon>,
    /// global_defs vrrp_rt_priority: [node] rt_priority.
    rt_priority: Option<u8>,
    /// vrrp_instance name → instance, in file order.
    instances: Vec<Instance>,
    /// Rendered [[service]] sections with where each came from.
    services: Vec<(String, Location, Option<IpAddr>)>,
    /// Group settings from global_defs (vrrp_version, vrrp_garp_*).
    group_defaults: Vec<(&'static str, String)>,
    /// Comments for the node file (global_defs of this director).
    node_comments: Vec<String>,
    /// Comments for the cluster file that come from this director's top level.
    cluster_comments: Vec<String>,
    notes: Vec<String>,
}

struct SyncDaemon {
    at: Location,
    id: Option<u8>,
    /// Rendered [sync] keys.
    keys: Vec<(&'static str, String)>,
}

struct Instance {
    name: String,
    at: Location,
    interface: Option<String>,
    priority: u8,
    /// Its unicast_src_ip and unicast_peer addresses: whose adverts the group obeys.
    obey: Vec<IpAddr>,
    /// Its addresses.
    vips: Vec<IpAddr>,
    /// Settings every director must agree on, rendered: key → value.
    shared: Vec<(&'static str, String)>,
    /// Comments about this instance's statements.
    comments: Vec<String>,
}

impl View {
    fn read(d: &Director) -> Result<View, ImportError> {
        let mut view = View {
            id: d.id.clone(),
            interface: None,
            address: None,
            sync: None,
            rt_priority: None,
            instances: Vec::new(),
            services: Vec::new(),
            group_defaults: Vec::new(),
            node_comments: Vec::new(),
            cluster_comments: Vec::new(),
            notes: Vec::new(),
        };
        let groups: BTreeMap<&str, &Stmt> = d
            .stmts
            .iter()
            .filter(|s| s.keyword() == "virtual_server_group")
            .filter_map(|s| Some((s.args().first()?.as_str(), s)))
            .collect();
        for s in &d.stmts {
            match s.keyword() {
                "global_defs" => view.global_defs(s)?,
                "vrrp_instance" => {
                    let instance = view.instance(s)?;
                    view.instances.push(instance);
                }
                "virtual_server" => view.virtual_server(s, &groups)?,
                "virtual_server_group" => {
                    view.note(s, Section::Top, None);
                }
                _ => {
                    let c = view.note(s, Section::Top, None);
                    view.cluster_comments.push(c);
                }
            }
        }
        Ok(view)
    }

    /// Records a statement that is not imported (or only approximately) and returns
    /// the comment line for the output.
    fn note(&mut self, s: &Stmt, section: Section, how: Option<&str>) -> String {
        let what = match (how, keywords::outcome(section, s.keyword())) {
            (Some(how), _) => how.to_owned(),
            (None, Some(Outcome::NotImported(why))) => format!("not imported: {why}"),
            (None, Some(Outcome::Approximated(how))) => format!("approximated: {how}"),
            (None, Some(Outcome::Imported(how))) => format!("imported: {how}"),
            (None, None) => format!(
                "not imported: not a keyword keepalived documents in {}",
                section.name()
            ),
        };
        let line = format!("{} ({}): {what}", s.words.join(" "), s.at);
        self.notes.push(line.clone());
        line
    }

    fn global_defs(&mut self, block: &Stmt) -> Result<(), ImportError> {
        for s in body(block)? {
            let kw = canonical(s.keyword());
            match kw {
                "lvs_sync_daemon" => {
                    let c = self.note(s, Section::GlobalDefs, None);
                    self.node_comments.push(c);
                    self.sync = Some(sync_daemon(s)?);
                    if self.interface.is_none() {
                        self.interface = s.args().first().cloned();
                    }
                }
                "vrrp_version" => {
                    let v = one(s)?;
                    if v != "2" && v != "3" {
                        return err(&s.at, format!("vrrp_version: {v:?} is not 2 or 3"));
                    }
                    self.group_defaults.push(("version", v.to_owned()));
                }
                "vrrp_rt_priority" => {
                    let p = int(s, one(s)?, 1, 99)?;
                    let c = self.note(s, Section::GlobalDefs, None);
                    self.node_comments.push(c);
                    self.rt_priority = u8::try_from(p).ok();
                }
                "vrrp_garp_master_delay" => self.default_secs(s, "garp_master_delay")?,
                "vrrp_garp_master_refresh" => self.default_secs(s, "garp_master_refresh")?,
                "vrrp_garp_interval" => self.default_secs(s, "garp_interval")?,
                "vrrp_gna_interval" => self.default_secs(s, "gna_interval")?,
                "vrrp_garp_master_repeat" => self.default_int(s, "garp_master_repeat")?,
                "vrrp_garp_master_refresh_repeat" => {
                    self.default_int(s, "garp_master_refresh_repeat")?
                }
                _ => {
                    let c = self.note(s, Section::GlobalDefs, None);
                    self.node_comments.push(c);
                }
            }
        }
        Ok(())
    }

    fn default_secs(&mut self, s: &Stmt, key: &'static str) -> Result<(), ImportError> {
        let v = seconds(s, one(s)?)?;
        self.group_defaults.push((key, v));
        Ok(())
    }

    fn default_int(&mut self, s: &Stmt, key: &'static str) -> Result<(), ImportError> {
        let v = int(s, one(s)?, 0, u32::MAX.into())?;
        self.group_defaults.push((key, v.to_string()));
        Ok(())
    }

    fn instance(&mut self, block: &Stmt) -> Result<Instance, ImportError> {
        let name = one(block)?.to_owned();
        let mut i = Instance {
            name,
            at: block.at.clone(),
            interface: None,
            priority: 100,
            obey: Vec::new(),
            vips: Vec::new(),
            shared: Vec::new(),
            comments: Vec::new(),
        };
        let mut vrid = None;
        let mut addresses: Vec<String> = Vec::new();
        for s in body(block)? {
            match canonical(s.keyword()) {
                "state" => {
                    let c = self.note(s, Section::VrrpInstance, None);
                    i.comments.push(c);
                }
                "interface" => i.interface = Some(one(s)?.to_owned()),
                "virtual_router_id" => vrid = Some(int(s, one(s)?, 1, 255)?),
                "priority" => i.priority = int(s, one(s)?, 1, 255)?.min(254) as u8,
                "advert_int" => i.shared.push(("advert_int", seconds(s, one(s)?)?)),
                "version" => {
                    let v = one(s)?;
                    if v != "2" && v != "3" {
                        return err(&s.at, format!("version: {v:?} is not 2 or 3"));
                    }
                    i.shared.push(("version", v.to_owned()));
                }
                "authentication" => {
                    if let Some(auth) = self.authentication(s, &mut i.comments)? {
                        i.shared.push(("authentication", auth));
                    }
                }
                "virtual_ipaddress" | "virtual_ipaddress_excluded" => {
                    if s.keyword() == "virtual_ipaddress_excluded" {
                        let c = self.note(s, Section::VrrpInstance, None);
                        i.comments.push(c);
                    }
                    for a in body(s)? {
                        let (text, addr) = vip(a, &mut i.comments, self)?;
                        addresses.push(text);
                        i.vips.push(addr);
                    }
                }
                "nopreempt" => i.shared.push(("preempt", "false".into())),
                "preempt" => {}
                "preempt_delay" => i.shared.push(("preempt_delay", seconds(s, one(s)?)?)),
                "garp_master_delay" => i.shared.push(("garp_master_delay", seconds(s, one(s)?)?)),
                "garp_master_refresh" => {
                    i.shared.push(("garp_master_refresh", seconds(s, one(s)?)?))
                }
                "garp_master_repeat" => i.shared.push((
                    "garp_master_repeat",
                    int(s, one(s)?, 0, u32::MAX.into())?.to_string(),
                )),
                "garp_master_refresh_repeat" => i.shared.push((
                    "garp_master_refresh_repeat",
                    int(s, one(s)?, 0, u32::MAX.into())?.to_string(),
                )),
                "unicast_src_ip" | "mcast_src_ip" => {
                    let c = self.note(s, Section::VrrpInstance, None);
                    i.comments.push(c);
                    let a = ip(s, one(s)?)?;
                    if s.keyword() == "unicast_src_ip" {
                        i.obey.push(a);
                    }
                    match &self.address {
                        Some((other, at)) if *other != a => {
                            return err(
                                &s.at,
                                format!(
                                "{}: {a} differs from {other} at {at}: one address per director",
                                s.keyword()
                            ),
                            )
                        }
                        _ => self.address = Some((a, s.at.clone())),
                    }
                }
                "unicast_peer" => {
                    let c = self.note(s, Section::VrrpInstance, None);
                    i.comments.push(c);
                    for p in body(s)? {
                        i.obey.push(ip(p, p.keyword())?);
                    }
                }
                _ => {
                    let c = self.note(s, Section::VrrpInstance, None);
                    i.comments.push(c);
                }
            }
        }
        let Some(vrid) = vrid else {
            return err(
                &block.at,
                format!("vrrp_instance {}: no virtual_router_id", i.name),
            );
        };
        if addresses.is_empty() {
            return err(
                &block.at,
                format!("vrrp_instance {}: no virtual_ipaddress", i.name),
            );
        }
        i.shared.insert(0, ("vrrp_id", vrid.to_string()));
        i.shared
            .insert(1, ("addresses", format!("[{}]", addresses.join(", "))));
        if self.interface.is_none() {
            self.interface = i.interface.clone();
        }
        Ok(i)
    }

    fn authentication(
        &mut self,
        block: &Stmt,
        comments: &mut Vec<String>,
    ) -> Result<Option<String>, ImportError> {
        let (mut kind, mut pass) = (None, None);
        for s in body(block)? {
            match s.keyword() {
                "auth_type" => kind = Some((one(s)?.to_owned(), s)),
                "auth_pass" => pass = Some(one(s)?.to_owned()),
                _ => {
                    let c = self.note(
                        s,
                        Section::VrrpInstance,
                        Some("not imported: not an authentication keyword"),
                    );
                    comments.push(c);
                }
            }
        }
        match (kind, pass) {
            (Some((k, _)), Some(p)) if k == "PASS" => {
                // keepalived uses the first 8 characters (the VRRPv2 field's size).
                let p: String = p.chars().take(8).collect();
                Ok(Some(format!(
                    "{{ type = \"pass\", password = {} }}",
                    toml_str(&p)
                )))
            }
            (Some((k, s)), _) if k == "AH" => {
                let c = self.note(s, Section::VrrpInstance, Some("not imported: lvs-mesh has cleartext (PASS) authentication only; the group sends and checks none"));
                comments.push(c);
                Ok(None)
            }
            (Some((k, s)), _) if k != "PASS" => {
                err(&s.at, format!("auth_type: {k:?} is not PASS or AH"))
            }
            _ => err(
                &block.at,
                "authentication needs auth_type PASS and auth_pass",
            ),
        }
    }

    fn virtual_server(
        &mut self,
        block: &Stmt,
        groups: &BTreeMap<&str, &Stmt>,
    ) -> Result<(), ImportError> {
        let args = block.args();
        let idents: Vec<(String, Location, Option<IpAddr>)> = match args.first().map(String::as_str)
        {
            Some("fwmark") => {
                let mark = int(
                    block,
                    args.get(1).map_or("", |s| s.as_str()),
                    1,
                    u32::MAX.into(),
                )?;
                vec![(format!("fwmark = {mark}\n"), block.at.clone(), None)]
            }
            Some("group") => {
                let name = args.get(1).map_or("", |s| s.as_str());
                let Some(group) = groups.get(name) else {
                    return err(&block.at, format!("virtual_server group {name}: no virtual_server_group {name} in this file"));
                };
                let mut idents = Vec::new();
                for member in body(group)? {
                    for (ident, vip) in group_member(member)? {
                        idents.push((ident, member.at.clone(), vip));
                    }
                }
                idents
            }
            Some(addr) => {
                let vip = ip(block, addr)?;
                let port = match args.get(1) {
                    Some(p) => int(block, p, 1, 65535)?,
                    // keepalived: no port = every port, a persistent service.
                    None => return err(&block.at, "virtual_server without a port (all ports) is not supported: give a port, or use a fwmark"),
                };
                vec![(
                    format!("vip = {}\nport = {port}\n", toml_str(&vip.to_string())),
                    block.at.clone(),
                    Some(vip),
                )]
            }
            None => {
                return err(
                    &block.at,
                    "virtual_server needs an address and port, fwmark N or group NAME",
                )
            }
        };
        let mut keys = String::new();
        let mut comments: Vec<String> = Vec::new();
        let mut defaults = CheckDefaults::default();
        let mut flags: Vec<String> = Vec::new();
        let mut real_servers = String::new();
        // Per member: a protocol for address services, a family for fwmark ones.
        let mut protocol: Option<(String, &Stmt)> = None;
        let mut family: Option<(String, &Stmt)> = None;
        for s in body(block)? {
            let kw = canonical(s.keyword());
            match kw {
                "delay_loop" => {
                    let _ = writeln!(keys, "delay_loop = {}", seconds(s, one(s)?)?);
                }
                "lvs_sched" => {
                    let v = one(s)?.to_ascii_lowercase();
                    let _ = writeln!(keys, "scheduler = {}", toml_str(&v));
                }
                "lvs_method" => keys.push_str(&method(s)?),
                "protocol" => {
                    let v = one(s)?.to_ascii_lowercase();
                    if !matches!(v.as_str(), "tcp" | "udp" | "sctp") {
                        return err(&s.at, format!("protocol: {v:?} is not TCP, UDP or SCTP"));
                    }
                    protocol = Some((format!("protocol = {}\n", toml_str(&v)), s));
                }
                "ip_family" => {
                    let v = one(s)?;
                    if v != "inet" && v != "inet6" {
                        return err(&s.at, format!("ip_family: {v:?} is not inet or inet6"));
                    }
                    family = Some((format!("family = {}\n", toml_str(v)), s));
                }
                "persistence_timeout" => {
                    let v = s.args().first().map_or(DEFAULT_PERSISTENCE, |v| v.as_str());
                    let _ = writeln!(
                        keys,
                        "persistence_timeout = {}",
                        int(s, v, 1, u32::MAX.into())?
                    );
                }
                "persistence_granularity" => {
                    let _ = writeln!(keys, "persistence_prefix = {}", prefix(s, one(s)?)?);
                }
                "ops" | "alpha" | "omega" | "inhibit_on_failure" => {
                    let _ = writeln!(keys, "{kw} = {}", boolean(s)?);
                }
                "quorum" | "hysteresis" => {
                    let _ = writeln!(keys, "{kw} = {}", int(s, one(s)?, 0, u32::MAX.into())?);
                }
                "sorry_server" => {
                    let a = ip(s, s.args().first().map_or("", |s| s.as_str()))?;
                    let port = match s.args().get(1) {
                        Some(p) => format!(", port = {}", int(s, p, 1, 65535)?),
                        None => String::new(),
                    };
                    let _ = writeln!(
                        keys,
                        "sorry_server = {{ address = {}{port} }}",
                        toml_str(&a.to_string())
                    );
                }
                "flag-1" | "flag-2" | "flag-3" | "sh-port" | "sh-fallback" | "mh-port"
                | "mh-fallback" => {
                    flags.push(toml_str(kw));
                }
                "virtualhost" | "connect_timeout" | "retry" | "delay_before_retry" | "warmup" => {
                    defaults.set(s, kw)?;
                }
                "real_server" => {
                    let (text, rs_comments) = self.real_server(s, &defaults)?;
                    real_servers.push('\n');
                    for c in rs_comments {
                        let _ = writeln!(real_servers, "# {c}");
                    }
                    real_servers.push_str(&text);
                }
                _ => comments.push(self.note(s, Section::VirtualServer, None)),
            }
        }
        if !flags.is_empty() {
            let _ = writeln!(keys, "sched_flags = [{}]", flags.join(", "));
        }
        for (ident, at, vip) in idents {
            let mut text = String::new();
            let _ = writeln!(text, "# virtual_server {}", block.args().join(" "));
            for c in &comments {
                let _ = writeln!(text, "# {c}");
            }
            let (own, other) = match vip {
                Some(_) => (&protocol, &family),
                None => (&family, &protocol),
            };
            if let Some((_, s)) = other {
                let why = match vip {
                    Some(_) => "not imported: an address service's family is its address's",
                    None => "not imported: a fwmark service takes every protocol its mark covers",
                };
                let c = self.note(s, Section::VirtualServer, Some(why));
                let _ = writeln!(text, "# {c}");
            }
            text.push_str("[[service]]\n");
            text.push_str(&ident);
            if let Some((line, _)) = own {
                text.push_str(line);
            }
            text.push_str(&keys);
            match vip {
                Some(_) => text.push_str(&real_servers),
                // The only `port = ` lines of the real servers' text are their ports,
                // which a fwmark service's real servers do not have.
                None => {
                    let (ports, rest): (Vec<&str>, Vec<&str>) =
                        real_servers.lines().partition(|l| l.starts_with("port = "));
                    if !ports.is_empty() {
                        let _ = writeln!(
                            text,
                            "# not imported: the real servers' ports (a fwmark service's \
                             real servers take the port of each packet)"
                        );
                    }
                    for l in rest {
                        text.push_str(l);
                        text.push('\n');
                    }
                }
            }
            self.services.push((text, at, vip));
        }
        Ok(())
    }

    fn real_server(
        &mut self,
        block: &Stmt,
        service: &CheckDefaults,
    ) -> Result<(String, Vec<String>), ImportError> {
        let args = block.args();
        let addr = ip(block, args.first().map_or("", |s| s.as_str()))?;
        let mut text = format!(
            "[[service.real_server]]\naddress = {}\n",
            toml_str(&addr.to_string())
        );
        if let Some(p) = args.get(1) {
            let _ = writeln!(text, "port = {}", int(block, p, 1, 65535)?);
        }
        let mut comments = vec![format!("real_server {}", args.join(" "))];
        let mut defaults = service.clone();
        let mut checks = String::new();
        let mut pending: Vec<&Stmt> = Vec::new();
        for s in body(block)? {
            let kw = canonical(s.keyword());
            match kw {
                "weight" => {
                    let _ = writeln!(text, "weight = {}", int(s, one(s)?, 0, 65535)?);
                }
                "lvs_method" => {
                    let v = one(s)?.to_ascii_lowercase();
                    if !matches!(v.as_str(), "dr" | "nat" | "tun") {
                        return err(&s.at, format!("lvs_method: {v:?} is not NAT, DR or TUN"));
                    }
                    let _ = writeln!(text, "forwarding = {}", toml_str(&v));
                }
                "uthreshold" => {
                    let _ = writeln!(
                        text,
                        "upper_threshold = {}",
                        int(s, one(s)?, 0, u32::MAX.into())?
                    );
                }
                "lthreshold" => {
                    let _ = writeln!(
                        text,
                        "lower_threshold = {}",
                        int(s, one(s)?, 0, u32::MAX.into())?
                    );
                }
                "inhibit_on_failure" => {
                    let _ = writeln!(text, "inhibit_on_failure = {}", boolean(s)?);
                }
                "virtualhost" | "connect_timeout" | "retry" | "delay_before_retry" | "warmup"
                | "delay_loop" => defaults.set(s, kw)?,
                "HTTP_GET" | "SSL_GET" | "TCP_CHECK" | "MISC_CHECK" | "DNS_CHECK" => {
                    pending.push(s)
                }
                _ => comments.push(self.note(s, Section::RealServer, None)),
            }
        }
        // Checks after every default of the block, wherever they were written.
        for s in pending {
            checks.push_str(&self.check(s, &defaults, &mut comments)?);
        }
        text.push_str(&checks);
        Ok((text, comments))
    }

    fn check(
        &mut self,
        block: &Stmt,
        defaults: &CheckDefaults,
        comments: &mut Vec<String>,
    ) -> Result<String, ImportError> {
        let kind = match block.keyword() {
            "HTTP_GET" => "http_get",
            "SSL_GET" => "ssl_get",
            "TCP_CHECK" => "tcp_check",
            "MISC_CHECK" => "misc_check",
            _ => "dns_check",
        };
        let mut d = defaults.clone();
        let mut keys = String::new();
        let mut urls = Vec::new();
        for s in body(block)? {
            let kw = canonical(s.keyword());
            match kw {
                "virtualhost" | "connect_timeout" | "retry" | "delay_before_retry" | "warmup"
                | "delay_loop" => d.set(s, kw)?,
                "connect_ip" => {
                    let _ = writeln!(
                        keys,
                        "connect_ip = {}",
                        toml_str(&ip(s, one(s)?)?.to_string())
                    );
                }
                "connect_port" => {
                    let _ = writeln!(keys, "connect_port = {}", int(s, one(s)?, 1, 65535)?);
                }
                "url" if kind == "http_get" || kind == "ssl_get" => {
                    urls.push(self.url(s, &mut d, comments)?);
                }
                "misc_path" if kind == "misc_check" => {
                    let _ = writeln!(keys, "misc_path = {}", toml_str(&s.args().join(" ")));
                }
                "misc_timeout" if kind == "misc_check" => {
                    let _ = writeln!(keys, "misc_timeout = {}", seconds(s, one(s)?)?);
                }
                "misc_dynamic" if kind == "misc_check" => {
                    let _ = writeln!(keys, "misc_dynamic = {}", boolean(s)?);
                }
                "type" if kind == "dns_check" => {
                    let _ = writeln!(
                        keys,
                        "dns_type = {}",
                        toml_str(&one(s)?.to_ascii_uppercase())
                    );
                }
                "name" if kind == "dns_check" => {
                    let _ = writeln!(keys, "dns_name = {}", toml_str(one(s)?));
                }
                _ => comments.push(self.note(s, Section::Checker, None)),
            }
        }
        let mut text = format!("[[service.real_server.check]]\nkind = \"{kind}\"\n");
        text.push_str(&d.render(kind));
        text.push_str(&keys);
        if !urls.is_empty() {
            let _ = writeln!(text, "url = [{}]", urls.join(", "));
        }
        Ok(text)
    }

    fn url(
        &mut self,
        block: &Stmt,
        d: &mut CheckDefaults,
        comments: &mut Vec<String>,
    ) -> Result<String, ImportError> {
        let mut fields = Vec::new();
        let mut path = None;
        for s in body(block)? {
            match s.keyword() {
                "path" => path = Some(one(s)?.to_owned()),
                "status_code" => {
                    let mut codes = Vec::new();
                    for c in s.args() {
                        let ok = |v: &str| v.parse::<u16>().is_ok_and(|n| (100..=599).contains(&n));
                        match c.split_once('-') {
                            Some((a, b)) if ok(a) && ok(b) => codes.push(toml_str(c)),
                            None if ok(c) => codes.push(c.clone()),
                            _ => return err(&s.at, format!("status_code: {c:?} is not a code 100..599 or a range like 200-299")),
                        }
                    }
                    if codes.is_empty() {
                        return err(&s.at, "status_code needs a code or a range");
                    }
                    fields.push(format!("status_code = [{}]", codes.join(", ")));
                }
                "digest" => {
                    let v = one(s)?;
                    if v.len() != 32 || !v.chars().all(|c| c.is_ascii_hexdigit()) {
                        return err(
                            &s.at,
                            format!("digest: {v:?} is not an MD5 sum (32 hex digits)"),
                        );
                    }
                    fields.push(format!("digest = {}", toml_str(&v.to_ascii_lowercase())));
                }
                "virtualhost" => {
                    let c = self.note(
                        s,
                        Section::Checker,
                        Some("approximated: a url's virtualhost applies to its whole check"),
                    );
                    comments.push(c);
                    d.set(s, "virtualhost")?;
                }
                _ => comments.push(self.note(s, Section::Checker, None)),
            }
        }
        let Some(path) = path else {
            return err(&block.at, "url needs a path");
        };
        fields.insert(0, format!("path = {}", toml_str(&path)));
        Ok(format!("{{ {} }}", fields.join(", ")))
    }
}

/// Check settings inherited from the virtual_server and real_server blocks.
#[derive(Clone, Default)]
struct CheckDefaults {
    keys: BTreeMap<&'static str, String>,
}

impl CheckDefaults {
    fn set(&mut self, s: &Stmt, kw: &str) -> Result<(), ImportError> {
        let (key, value) = match kw {
            "virtualhost" => ("virtualhost", toml_str(one(s)?)),
            "connect_timeout" => ("connect_timeout", seconds(s, one(s)?)?),
            "retry" => ("retry", int(s, one(s)?, 0, u32::MAX.into())?.to_string()),
            "delay_before_retry" => ("delay_before_retry", seconds(s, one(s)?)?),
            "warmup" => ("warmup", seconds(s, one(s)?)?),
            _ => ("delay_loop", seconds(s, one(s)?)?),
        };
        self.keys.insert(key, value);
        Ok(())
    }

    fn render(&self, kind: &str) -> String {
        let mut out = String::new();
        // The order of the seed's examples: timeouts first, then retries.
        for key in [
            "delay_loop",
            "connect_timeout",
            "retry",
            "delay_before_retry",
            "warmup",
            "virtualhost",
        ] {
            if key == "virtualhost" && kind != "http_get" && kind != "ssl_get" {
                continue;
            }
            if let Some(v) = self.keys.get(key) {
                let _ = writeln!(out, "{key} = {v}");
            }
        }
        out
    }
}

/// `ADDR[/LEN] [dev IF] [brd ..] [scope ..] [label ..] ...` of virtual_ipaddress.
fn vip(
    s: &Stmt,
    comments: &mut Vec<String>,
    view: &mut View,
) -> Result<(String, IpAddr), ImportError> {
    let word = s.keyword();
    let (addr, len) = match word.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (word, None),
    };
    let a = ip(s, addr)?;
    let max = if a.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => int(s, l, 1, max)?,
        None => max,
    };
    if s.words.len() > 1 || s.block.is_some() {
        let c = view.note(
            s,
            Section::VrrpInstance,
            Some("approximated: the address is imported, its options (dev, brd, scope, label, ...) are not"),
        );
        comments.push(c);
    }
    Ok((toml_str(&format!("{a}/{len}")), a))
}

/// `lvs_method NAT|DR|TUN [type ipip|gue port N|gre] [nocsum|csum|remcsum]`.
fn method(s: &Stmt) -> Result<String, ImportError> {
    let args = s.args();
    let kind = args
        .first()
        .map(|a| a.to_ascii_lowercase())
        .unwrap_or_default();
    if !matches!(kind.as_str(), "dr" | "nat" | "tun") {
        return err(&s.at, format!("lvs_method: {kind:?} is not NAT, DR or TUN"));
    }
    let mut out = format!("forwarding = {}\n", toml_str(&kind));
    let mut rest = args[1..].iter();
    while let Some(a) = rest.next() {
        match a.as_str() {
            "type" if kind == "tun" => {
                let t = rest
                    .next()
                    .map(|t| t.to_ascii_lowercase())
                    .unwrap_or_default();
                if !matches!(t.as_str(), "ipip" | "gue" | "gre") {
                    return err(
                        &s.at,
                        format!("lvs_method TUN type: {t:?} is not ipip, gue or gre"),
                    );
                }
                let _ = writeln!(out, "tunnel_type = {}", toml_str(&t));
            }
            "port" if kind == "tun" => {
                let p = rest.next().map_or("", |p| p.as_str());
                let _ = writeln!(out, "tunnel_port = {}", int(s, p, 1, 65535)?);
            }
            "nocsum" | "csum" | "remcsum" if kind == "tun" => {
                let _ = writeln!(out, "tunnel_checksum = {}", toml_str(a));
            }
            other => return err(&s.at, format!("lvs_method: unexpected {other:?}")),
        }
    }
    Ok(out)
}

/// One virtual_server_group member: `ADDR[-LAST] PORT` or `fwmark N [inet|inet6]`,
/// as the identity lines of a [[service]].
fn group_member(s: &Stmt) -> Result<Vec<(String, Option<IpAddr>)>, ImportError> {
    if s.keyword() == "fwmark" {
        let mark = int(
            s,
            s.args().first().map_or("", |m| m.as_str()),
            1,
            u32::MAX.into(),
        )?;
        let family = match s.args().get(1).map(String::as_str) {
            None => String::new(),
            Some(f @ ("inet" | "inet6")) => format!("family = \"{f}\"\n"),
            Some(other) => {
                return err(
                    &s.at,
                    format!("fwmark family: {other:?} is not inet or inet6"),
                )
            }
        };
        return Ok(vec![(format!("fwmark = {mark}\n{family}"), None)]);
    }
    let Some(port) = s.args().first() else {
        return err(&s.at, "a virtual_server_group address needs a port");
    };
    let port = int(s, port, 1, 65535)?;
    let addrs: Vec<IpAddr> = match s.keyword().split_once('-') {
        None => vec![ip(s, s.keyword())?],
        Some((first, last)) => {
            // The range is in the last part: an IPv4 address's last byte (decimal), an
            // IPv6 address's last 16 bits (hex), as keepalived reads it.
            let (from, to, make): (u16, u64, Box<dyn Fn(u16) -> IpAddr>) = match ip(s, first)? {
                IpAddr::V4(v4) => {
                    let [a, b, c, d] = v4.octets();
                    let to = int(s, last, 0, 255)?;
                    (
                        d.into(),
                        to,
                        Box::new(move |o| IpAddr::from([a, b, c, o as u8])),
                    )
                }
                IpAddr::V6(v6) => {
                    let parts = v6.segments();
                    let to = u64::from_str_radix(last, 16)
                        .ok()
                        .filter(|v| *v <= 0xffff)
                        .map_or_else(
                            || {
                                err(
                                    &s.at,
                                    format!("range {}: {last:?} is not hex 0..ffff", s.keyword()),
                                )
                            },
                            Ok,
                        )?;
                    (
                        parts[7],
                        to,
                        Box::new(move |o| {
                            let mut p = parts;
                            p[7] = o;
                            IpAddr::from(p)
                        }),
                    )
                }
            };
            if to < u64::from(from) {
                return err(
                    &s.at,
                    format!("range {}: the end is below the start", s.keyword()),
                );
            }
            (from..=to as u16).map(make).collect()
        }
    };
    Ok(addrs
        .into_iter()
        .map(|a| {
            (
                format!("vip = {}\nport = {port}\n", toml_str(&a.to_string())),
                Some(a),
            )
        })
        .collect())
}

fn sync_daemon(s: &Stmt) -> Result<SyncDaemon, ImportError> {
    let mut d = SyncDaemon {
        at: s.at.clone(),
        id: None,
        keys: Vec::new(),
    };
    // lvs_sync_daemon INTERFACE [INSTANCE] [id N] [maxlen N] [port N] [ttl N] [group IP]
    let mut rest = s.args().iter().skip(1).peekable();
    if rest
        .peek()
        .is_some_and(|w| !matches!(w.as_str(), "id" | "maxlen" | "port" | "ttl" | "group"))
    {
        rest.next();
    }
    while let Some(key) = rest.next() {
        let value = rest.next().map_or("", |v| v.as_str());
        match key.as_str() {
            "id" => d.id = Some(int(s, value, 0, 255)? as u8),
            "maxlen" => d
                .keys
                .push(("maxlen", int(s, value, 1, 65535)?.to_string())),
            "port" => d
                .keys
                .push(("mcast_port", int(s, value, 1, 65535)?.to_string())),
            "ttl" => d
                .keys
                .push(("mcast_ttl", int(s, value, 1, 255)?.to_string())),
            "group" => d
                .keys
                .push(("mcast_group", toml_str(&ip(s, value)?.to_string()))),
            other => return err(&s.at, format!("lvs_sync_daemon: unexpected {other:?}")),
        }
    }
    Ok(d)
}

/// The block of a statement that must have one.
fn body(s: &Stmt) -> Result<&[Stmt], ImportError> {
    match &s.block {
        Some(b) => Ok(b),
        None => err(&s.at, format!("{} needs a {{ block }}", s.keyword())),
    }
}

/// The one argument of a statement.
fn one(s: &Stmt) -> Result<&str, ImportError> {
    match s.args() {
        [v] => Ok(v),
        [] => err(&s.at, format!("{} needs a value", s.keyword())),
        _ => err(
            &s.at,
            format!(
                "{} takes one value, not {}",
                s.keyword(),
                s.args().join(" ")
            ),
        ),
    }
}

fn canonical(keyword: &str) -> &str {
    keywords::ALIASES
        .iter()
        .find(|(old, _)| *old == keyword)
        .map_or(keyword, |(_, new)| new)
}

fn int(s: &Stmt, v: &str, lo: u64, hi: u64) -> Result<u64, ImportError> {
    match v.parse::<u64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => err(
            &s.at,
            format!("{}: {v:?} is not a whole number {lo}..={hi}", s.keyword()),
        ),
    }
}

/// A keepalived <TIMER>: seconds, fractions allowed; rendered as TOML.
fn seconds(s: &Stmt, v: &str) -> Result<String, ImportError> {
    match v.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(if n.fract() == 0.0 && n < 1e15 {
            format!("{}", n as u64)
        } else {
            format!("{n}")
        }),
        _ => err(
            &s.at,
            format!("{}: {v:?} is not a number of seconds", s.keyword()),
        ),
    }
}

fn ip(s: &Stmt, v: &str) -> Result<IpAddr, ImportError> {
    v.parse().or_else(|_| {
        err(
            &s.at,
            format!("{}: {v:?} is not an IP address", s.keyword()),
        )
    })
}

/// keepalived <BOOL>, true when absent.
fn boolean(s: &Stmt) -> Result<bool, ImportError> {
    match s.args().first().map(String::as_str) {
        None | Some("on" | "true" | "yes") => Ok(true),
        Some("off" | "false" | "no") => Ok(false),
        Some(other) => err(
            &s.at,
            format!(
                "{}: {other:?} is not on/off, true/false or yes/no",
                s.keyword()
            ),
        ),
    }
}

/// A netmask (`255.255.255.0`) or a prefix length, as a prefix length.
fn prefix(s: &Stmt, v: &str) -> Result<u32, ImportError> {
    if let Ok(n) = v.parse::<u32>() {
        if (1..=128).contains(&n) {
            return Ok(n);
        }
    }
    let bits = match v.parse::<IpAddr>() {
        Ok(IpAddr::V4(m)) => u128::from(u32::from(m)) << 96,
        Ok(IpAddr::V6(m)) => u128::from(m),
        Err(_) => 0,
    };
    let len = bits.leading_ones();
    if len == 0 || bits.count_ones() != len {
        return err(
            &s.at,
            format!("{}: {v:?} is not a netmask or prefix length", s.keyword()),
        );
    }
    Ok(len)
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The groups of every director's instances, merged by instance name: (name, places,
/// shared settings, priorities per director, interface per director, comments).
struct Group {
    name: String,
    places: Vec<Location>,
    shared: Vec<(&'static str, String)>,
    priorities: Vec<(String, u8)>,
    /// Each director's instance interface, where given.
    interfaces: Vec<(String, Option<String>)>,
    comments: Vec<String>,
    /// The group's own interface, when the instances' are not the nodes' interfaces.
    interface: Option<String>,
    /// Every director's unicast_src_ip and unicast_peer addresses.
    obey: BTreeSet<IpAddr>,
    vips: Vec<IpAddr>,
}

fn merge_groups(views: &[View]) -> Result<Vec<Group>, ImportError> {
    let mut groups: Vec<Group> = Vec::new();
    for v in views {
        for i in &v.instances {
            let mut shared = v.group_defaults.clone();
            for (k, val) in &i.shared {
                shared.retain(|(dk, _)| dk != k);
                shared.push((k, val.clone()));
            }
            // keepalived runs an instance with IPv6 addresses as VRRPv3 unless told.
            if i.vips.iter().any(IpAddr::is_ipv6) && !shared.iter().any(|(k, _)| *k == "version") {
                shared.push(("version", "3".into()));
            }
            // One order for comparing: the instance's own, defaults after.
            shared.sort_by_key(|(k, _)| key_order(k));
            match groups.iter_mut().find(|g| g.name == i.name) {
                None => groups.push(Group {
                    name: i.name.clone(),
                    places: vec![i.at.clone()],
                    shared,
                    priorities: vec![(v.id.clone(), i.priority)],
                    interfaces: vec![(v.id.clone(), i.interface.clone())],
                    comments: i.comments.clone(),
                    interface: None,
                    obey: i.obey.iter().copied().collect(),
                    vips: i.vips.clone(),
                }),
                Some(g) => {
                    if g.shared != shared {
                        let differs = g
                            .shared
                            .iter()
                            .chain(&shared)
                            .find(|kv| !g.shared.contains(kv) || !shared.contains(kv))
                            .map_or("a setting", |(k, _)| k);
                        return err(
                            &i.at,
                            format!(
                                "vrrp_instance {}: its {differs} differs from the one at {}: \
                                 the directors must agree on everything but priority and interface",
                                i.name, g.places[0]
                            ),
                        );
                    }
                    g.places.push(i.at.clone());
                    g.priorities.push((v.id.clone(), i.priority));
                    g.interfaces.push((v.id.clone(), i.interface.clone()));
                    g.comments.extend(i.comments.iter().cloned());
                    g.obey.extend(i.obey.iter().copied());
                }
            }
        }
    }
    for g in &mut groups {
        g.interface = group_interface(g, views)?;
    }
    Ok(groups)
}

/// `None` when every director's instance runs on its node interface; the one name
/// when they all use the same other interface; an error otherwise (a group's
/// interface is one for the whole cluster).
fn group_interface(g: &Group, views: &[View]) -> Result<Option<String>, ImportError> {
    let node_iface = |id: &str| {
        views
            .iter()
            .find(|v| v.id == id)
            .and_then(|v| v.interface.clone())
    };
    let on_node = g
        .interfaces
        .iter()
        .all(|(id, iface)| iface.is_none() || *iface == node_iface(id));
    if on_node {
        return Ok(None);
    }
    let named: Vec<&String> = g
        .interfaces
        .iter()
        .filter_map(|(_, i)| i.as_ref())
        .collect();
    if named.len() == g.interfaces.len() && named.iter().all(|i| *i == named[0]) {
        return Ok(Some(named[0].clone()));
    }
    let list: Vec<String> = g
        .interfaces
        .iter()
        .map(|(id, i)| format!("{id}: {}", i.as_deref().unwrap_or("(none)")))
        .collect();
    err(
        &g.places[0],
        format!(
            "vrrp_instance {}: its interfaces ({}) are neither each director's main interface \
             nor one name on all: lvs-mesh gives a group one interface",
            g.name,
            list.join(", ")
        ),
    )
}

/// Service addresses no vrrp_instance holds (keepalived left them to the host), each
/// once, with the first service's place.
fn unheld(
    groups: &[Group],
    services: &[(String, Location, Option<IpAddr>)],
) -> Vec<(IpAddr, Location)> {
    let mut out: Vec<(IpAddr, Location)> = Vec::new();
    for (_, at, vip) in services {
        if let Some(vip) = vip {
            let held = groups.iter().any(|g| g.vips.contains(vip));
            if !held && !out.iter().any(|(v, _)| v == vip) {
                out.push((*vip, at.clone()));
            }
        }
    }
    out
}

/// A VIP group for a service address no vrrp_instance holds: lvs-mesh holds every
/// service's address through one, so the import adds it, with the lowest vrrp_id
/// no other group uses, and says so.
fn group_for(vip: IpAddr, at: &Location, groups: &[Group]) -> Group {
    let used: BTreeSet<String> = groups
        .iter()
        .flat_map(|g| {
            g.shared
                .iter()
                .filter(|(k, _)| *k == "vrrp_id")
                .map(|(_, v)| v.clone())
        })
        .collect();
    let vrid = (1..=255u16)
        .find(|n| !used.contains(&n.to_string()))
        .unwrap_or(255);
    let len = if vip.is_ipv4() { 32 } else { 128 };
    let mut shared = vec![
        ("vrrp_id", vrid.to_string()),
        (
            "addresses",
            format!("[{}]", toml_str(&format!("{vip}/{len}"))),
        ),
    ];
    if vip.is_ipv6() {
        shared.push(("version", "3".into()));
    }
    let name = format!("vip_{vip}").replace(['.', ':'], "_");
    Group {
        name,
        places: vec![at.clone()],
        shared,
        priorities: Vec::new(),
        interfaces: Vec::new(),
        comments: vec![format!(
            "added: no vrrp_instance holds {vip}, which a virtual_server uses (keepalived left \
             the address to the host); lvs-mesh holds a service's address by a VIP group, so \
             this one was added with vrrp_id {vrid}, free among these groups: check it against \
             the other VRRP routers on the link"
        )],
        interface: None,
        obey: BTreeSet::new(),
        vips: vec![vip],
    }
}

fn key_order(key: &str) -> usize {
    const ORDER: &[&str] = &[
        "vrrp_id",
        "addresses",
        "version",
        "advert_int",
        "preempt",
        "preempt_delay",
        "authentication",
        "garp_master_delay",
        "garp_master_repeat",
        "garp_master_refresh",
        "garp_master_refresh_repeat",
        "garp_interval",
        "gna_interval",
        "vrrp_obey",
    ];
    ORDER.iter().position(|k| *k == key).unwrap_or(ORDER.len())
}

/// The virtual servers, which every director must list alike.
fn merge_services(views: &[View]) -> Result<Vec<(String, Location, Option<IpAddr>)>, ImportError> {
    let Some((first, rest)) = views.split_first() else {
        return Ok(Vec::new());
    };
    // Comments name each director's own lines: compared without them.
    let settings = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    for v in rest {
        for (i, (text, at, _)) in v.services.iter().enumerate() {
            match first.services.get(i) {
                Some((t, _, _)) if settings(t) == settings(text) => {}
                Some((_, other, _)) => {
                    return err(at, format!("this virtual_server differs from the one at {other}: the directors must list the same virtual servers in the same order"))
                }
                None => return err(at, format!("director {} has no virtual_server like this one", first.id)),
            }
        }
        if let Some((_, at, _)) = first.services.get(v.services.len()) {
            return err(
                at,
                format!("director {} has no virtual_server like this one", v.id),
            );
        }
    }
    Ok(first.services.clone())
}

/// The [sync] keys, which every director with an lvs_sync_daemon must give alike.
fn merge_sync(views: &[View]) -> Result<Option<Vec<(&'static str, String)>>, ImportError> {
    let mut merged: Option<&SyncDaemon> = None;
    for d in views.iter().filter_map(|v| v.sync.as_ref()) {
        match merged {
            Some(m) if m.keys != d.keys => {
                return err(
                    &d.at,
                    format!(
                        "lvs_sync_daemon: its settings differ from those at {}",
                        m.at
                    ),
                );
            }
            Some(_) => {}
            None => merged = Some(d),
        }
    }
    Ok(merged.map(|d| d.keys.clone()))
}

fn cluster_file(
    options: &Options,
    views: &[View],
    groups: &[Group],
    services: &[String],
    sync: Option<&Vec<(&'static str, String)>>,
) -> String {
    let mut out = String::new();
    let ids: Vec<&str> = views.iter().map(|v| v.id.as_str()).collect();
    let _ = writeln!(
        out,
        "# Cluster part imported from keepalived by `lvs-agent import-keepalived` (directors {}).\n\
         # Identical on every director; each also loads its node part (ID.toml).",
        ids.join(", ")
    );
    for v in views {
        for c in &v.cluster_comments {
            let _ = writeln!(out, "# {c}");
        }
    }
    let _ = writeln!(
        out,
        "\n[cluster]\nname = {}",
        toml_str(&options.cluster_name)
    );
    if let Some(keys) = sync {
        out.push_str("\n[sync]\n");
        for (k, v) in keys {
            let _ = writeln!(out, "{k} = {v}");
        }
    }
    for g in groups {
        let places: Vec<String> = g.places.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "\n# vrrp_instance {} ({})", g.name, places.join(", "));
        for c in &g.comments {
            let _ = writeln!(out, "# {c}");
        }
        let _ = writeln!(out, "[[vip_group]]\nname = {}", toml_str(&g.name));
        if let Some(iface) = &g.interface {
            let _ = writeln!(out, "interface = {}", toml_str(iface));
        }
        for (k, v) in &g.shared {
            if *k == "addresses" {
                let _ = writeln!(out, "{k} = {v}");
                let prios: Vec<String> = g
                    .priorities
                    .iter()
                    .map(|(id, p)| format!("{} = {p}", toml_key(id)))
                    .collect();
                if !prios.is_empty() {
                    let _ = writeln!(out, "priorities = {{ {} }}", prios.join(", "));
                }
            } else {
                let _ = writeln!(out, "{k} = {v}");
            }
        }
        if !g.obey.is_empty() {
            let sources: Vec<String> = g.obey.iter().map(|a| toml_str(&a.to_string())).collect();
            let _ = writeln!(out, "vrrp_obey = [{}]", sources.join(", "));
        }
    }
    for s in services {
        out.push('\n');
        out.push_str(s);
    }
    out
}

fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_owned()
    } else {
        toml_str(k)
    }
}

fn node_file(v: &View, syncid: u8, addresses: &[(String, IpAddr)], options: &Options) -> String {
    let mut out = format!(
        "# Node part of director {} imported from keepalived by `lvs-agent import-keepalived`\n\
         # (cluster part: cluster.toml).\n",
        v.id
    );
    for c in &v.node_comments {
        let _ = writeln!(out, "# {c}");
    }
    let address = addresses
        .iter()
        .find(|(id, _)| *id == v.id)
        .map(|(_, a)| *a);
    let join: Vec<String> = addresses
        .iter()
        .filter(|(id, _)| *id != v.id)
        .map(|(_, a)| {
            toml_str(&std::net::SocketAddr::new(*a, crate::config::DEFAULT_GOSSIP_PORT).to_string())
        })
        .collect();
    let _ = writeln!(out, "\n[node]\nid = {}", toml_str(&v.id));
    if let Some(iface) = &v.interface {
        let _ = writeln!(out, "interface = {}", toml_str(iface));
    }
    if let Some(a) = address {
        let _ = writeln!(out, "address = {}", toml_str(&a.to_string()));
    }
    let _ = writeln!(out, "syncid = {syncid}");
    if let Some(p) = v.rt_priority {
        let _ = writeln!(out, "rt_priority = {p}");
    }
    let _ = writeln!(out, "join = [{}]", join.join(", "));
    let _ = writeln!(out, "cluster_key_files = [{}]", toml_str(&options.key_file));
    out
}
