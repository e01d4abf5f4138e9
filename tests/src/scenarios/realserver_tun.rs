//! A TUN service's real servers set up by `lvs-agent realserver`, end to end: lb1
//! forwards 10.0.0.30:80 to rs1 and rs2 in IP-in-IP (`ipvsadm -i`); on each real server
//! `realserver up` sets `tunl0` up (the `ipip` module creates it down), puts the VIP on
//! it and turns `rp_filter` off; the client's fetches are answered by both. `down` puts
//! everything back (tunl0 down, no VIP, the sysctls as before) and the fetches fail.
use crate::scenario::Ctx;
use crate::topology::TopologySpec;
use anyhow::Result;
use std::net::Ipv4Addr;

/// Not one of the topology's DR VIPs (those are on every real server's `lo`).
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 30);
const FETCHES: u16 = 20;

pub fn run(ctx: &mut Ctx) -> Result<()> {
    let topo = ctx.topology(TopologySpec::seed())?;
    let spec = topo.spec().clone();
    let (lb1, client) = (topo.ns("lb1"), topo.ns("client"));
    let port = spec.http_port;
    ctx.sh
        .run(&format!("ip -n {lb1} addr add {VIP}/32 dev eth0"))?;
    ctx.sh
        .run(&format!("ip -n {client} route add {VIP}/32 dev eth0"))?;
    ctx.sh
        .run_in(&lb1, &format!("ipvsadm -A -t {VIP}:{port} -s rr"))?;
    let mut cluster = format!(
        "[cluster]\nname = \"tun\"\n\n[[service]]\nvip = \"{VIP}\"\nport = {port}\nforwarding = \"tun\"\n"
    );
    for rs in &spec.real_servers {
        ctx.sh.run_in(
            &lb1,
            &format!("ipvsadm -a -t {VIP}:{port} -r {rs}:{port} -i"),
        )?;
        cluster += &format!("[[service.real_server]]\naddress = \"{rs}\"\nport = {port}\n");
    }
    let config = std::env::temp_dir().join("realserver-tun.toml");
    std::fs::write(&config, cluster)?;
    let agent = ctx.guest_tool().with_file_name("lvs-agent");
    let sysctls = "sysctl -n net.ipv4.conf.all.rp_filter net.ipv4.conf.tunl0.rp_filter";

    let real_servers: Vec<String> = (1..=spec.real_servers.len())
        .map(|i| format!("rs{i}"))
        .collect();
    let mut before = Vec::new();
    for node in &real_servers {
        let ns = topo.ns(node);
        let link = ctx.sh.run_in(&ns, "ip -o link show dev tunl0")?;
        before.push((
            ctx.sh.run_in(&ns, "ip -o addr show dev tunl0")?,
            ctx.sh.run_in(&ns, sysctls)?,
            link.contains(",UP"),
        ));
        let state = std::env::temp_dir().join(format!("{node}-tun.state"));
        let cmd = |verb: &str| {
            format!(
                "{} realserver {verb} -c {} --state {}",
                agent.display(),
                config.display(),
                state.display()
            )
        };
        let up = ctx.sh.run_in(&ns, &cmd("up"))?;
        ctx.check(
            up.contains("tunl0 set up") && up.contains(&format!("{VIP}/32 on tunl0")),
            format!("{node}: realserver up raised tunl0 and put {VIP} on it"),
        )?;
        let status = cmd("status");
        let argv: Vec<&str> = status.split(' ').collect();
        let ran = ctx.sh.exec(Some(&ns), &argv)?;
        ctx.check(ran.success(), format!("{node}: realserver status says up"))?;
    }

    let got = topo.fetch(&mut ctx.sh, "client", VIP, FETCHES)?;
    let half = u64::from(FETCHES / 2);
    ctx.check(
        got.errors == 0 && got.from("rs1") == half && got.from("rs2") == half,
        format!(
            "{FETCHES} fetches of {VIP} in IP-in-IP: rs1={} rs2={} errors={}",
            got.from("rs1"),
            got.from("rs2"),
            got.errors
        ),
    )?;

    for (node, (addrs, values, was_up)) in real_servers.iter().zip(before) {
        let ns = topo.ns(node);
        let state = std::env::temp_dir().join(format!("{node}-tun.state"));
        ctx.sh.run_in(
            &ns,
            &format!(
                "{} realserver down --state {}",
                agent.display(),
                state.display()
            ),
        )?;
        let link = ctx.sh.run_in(&ns, "ip -o link show dev tunl0")?;
        let same = ctx.sh.run_in(&ns, "ip -o addr show dev tunl0")? == addrs
            && ctx.sh.run_in(&ns, sysctls)? == values
            && link.contains(",UP") == was_up;
        ctx.check(
            same,
            format!("{node}: realserver down left tunl0 and the sysctls as before"),
        )?;
    }
    let after = topo.fetch(&mut ctx.sh, "client", VIP, 2)?;
    ctx.check(
        after.errors == 2,
        format!(
            "after down no real server takes {VIP}: {} of 2 fetches failed",
            after.errors
        ),
    )?;
    Ok(())
}
