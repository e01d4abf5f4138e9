//! Drives `lvs_agent::ipvs` against a real kernel (run as root where `ip_vs`
//! is loaded, e.g. in the qemu lab). Modes:
//! - `create`: creates the reference services, destinations with the client;
//! - `check`:  dumps and checks they read back exactly as the reference
//!   (whoever created them: the client or the equivalent ipvsadm commands);
//! - `misc`:   typed errors, edits, timeouts, sync daemons.
//!
//! Prints one `ok`/`FAIL` line per check and exits non-zero on any failure.

use std::process::ExitCode;

use lvs_agent::ipvs::*;

fn sock(s: &str) -> std::net::SocketAddr {
    s.parse().expect("socket address")
}

fn key(protocol: Protocol, addr: &str) -> ServiceKey {
    ServiceKey::Addr {
        protocol,
        addr: sock(addr),
    }
}

fn dest(addr: &str, forwarding: Forwarding, weight: u32, upper: u32, lower: u32) -> Destination {
    Destination {
        addr: sock(addr),
        forwarding,
        weight,
        upper_threshold: upper,
        lower_threshold: lower,
    }
}

/// The reference set; `deploy`-side ipvsadm equivalents are in the comments.
fn reference() -> Vec<(Service, Vec<Destination>)> {
    let both = SchedFlags::FALLBACK.union(SchedFlags::PORT);
    let mut out = Vec::new();
    // -A -t 10.0.0.10:80 -s wrr
    out.push((
        Service::new(key(Protocol::Tcp, "10.0.0.10:80"), Scheduler::Wrr),
        vec![
            // -a -r 172.16.0.100:80 -g -w 5 -x 100 -y 10
            dest("172.16.0.100:80", Forwarding::Route, 5, 100, 10),
            // -a -r 172.16.0.101:8080 -m -w 2
            dest("172.16.0.101:8080", Forwarding::Masq, 2, 0, 0),
            // -a -r 172.16.0.102:80 -i --tun-type gue --tun-port 6080 --tun-csum -w 1
            dest(
                "172.16.0.102:80",
                Forwarding::Tunnel {
                    kind: TunnelKind::Gue,
                    port: 6080,
                    flags: TunnelFlags {
                        csum: true,
                        remcsum: false,
                    },
                },
                1,
                0,
                0,
            ),
            // -a -r 172.16.0.103:80 -i --tun-type gre -w 1
            dest(
                "172.16.0.103:80",
                Forwarding::Tunnel {
                    kind: TunnelKind::Gre,
                    port: 0,
                    flags: TunnelFlags::default(),
                },
                1,
                0,
                0,
            ),
        ],
    ));
    // -A -u [2001:db8::10]:53 -s rr -p 300 -M 64 ; -a -r [2001:db8::100]:53 -g -w 0
    let mut udp6 = Service::new(key(Protocol::Udp, "[2001:db8::10]:53"), Scheduler::Rr);
    udp6.persistence = Some(Persistence {
        timeout_s: 300,
        prefix_len: 64,
    });
    out.push((
        udp6,
        vec![dest("[2001:db8::100]:53", Forwarding::Route, 0, 0, 0)],
    ));
    // -A -t 10.0.0.20:8080 -s wlc -p 600 -M 255.255.255.0
    let mut wlc = Service::new(key(Protocol::Tcp, "10.0.0.20:8080"), Scheduler::Wlc);
    wlc.persistence = Some(Persistence {
        timeout_s: 600,
        prefix_len: 24,
    });
    out.push((wlc, vec![]));
    // -A -f 42 -s lc ; -A -f 43 -6 -s sed
    for (family, mark, s) in [
        (Family::V4, 42, Scheduler::Lc),
        (Family::V6, 43, Scheduler::Sed),
    ] {
        out.push((Service::new(ServiceKey::Fwmark { family, mark }, s), vec![]));
    }
    // -A -t 10.0.0.11:443 -s sh -b sh-fallback,sh-port
    let mut sh = Service::new(key(Protocol::Tcp, "10.0.0.11:443"), Scheduler::Sh);
    sh.sched_flags = both;
    out.push((sh, vec![]));
    // -A --sctp-service 10.0.0.12:9 -s mh -b mh-fallback,mh-port
    let mut mh = Service::new(key(Protocol::Sctp, "10.0.0.12:9"), Scheduler::Mh);
    mh.sched_flags = both;
    out.push((mh, vec![]));
    // -A -t 10.0.0.30:<n> -s <sched> for the remaining schedulers
    for (port, s) in [
        (1, Scheduler::Rr),
        (2, Scheduler::Lblc),
        (3, Scheduler::Lblcr),
        (4, Scheduler::Dh),
        (5, Scheduler::Nq),
        (6, Scheduler::Fo),
        (7, Scheduler::Ovf),
    ] {
        let k = key(Protocol::Tcp, &format!("10.0.0.30:{port}"));
        out.push((Service::new(k, s), vec![]));
    }
    // -A -u 10.0.0.40:53 -s rr -o
    let mut op = Service::new(key(Protocol::Udp, "10.0.0.40:53"), Scheduler::Rr);
    op.one_packet = true;
    out.push((op, vec![]));
    out
}

struct Report {
    failed: usize,
}

impl Report {
    fn check(&mut self, what: &str, ok: bool, detail: impl std::fmt::Debug) {
        if ok {
            println!("ok   {what}");
        } else {
            self.failed += 1;
            println!("FAIL {what}: {detail:?}");
        }
    }
}

async fn create(c: &IpvsClient, r: &mut Report) {
    for (svc, dests) in reference() {
        let res = c.add_service(&svc).await;
        r.check(&format!("add service {}", svc.key), res.is_ok(), res);
        for d in dests {
            let res = c.add_destination(&svc.key, &d).await;
            r.check(
                &format!("add destination {} to {}", d.addr, svc.key),
                res.is_ok(),
                res,
            );
        }
    }
}

async fn check(c: &IpvsClient, r: &mut Report) -> Result<(), Error> {
    let mut want = reference();
    want.sort();
    let mut got: Vec<(Service, Vec<Destination>)> = c
        .snapshot()
        .await?
        .into_iter()
        .map(|(s, ds)| {
            let mut ds: Vec<_> = ds.into_iter().map(|d| d.destination).collect();
            ds.sort();
            (s.service, ds)
        })
        .collect();
    got.sort();
    for (w, mut wd) in want.clone() {
        wd.sort();
        let found = got.iter().find(|(s, _)| s.key == w.key);
        r.check(
            &format!("dump matches {}", w.key),
            found == Some(&(w.clone(), wd.clone())),
            (found, &w, &wd),
        );
    }
    r.check(
        "dump has no extra service",
        got.len() == want.len(),
        got.len(),
    );
    Ok(())
}

async fn misc(c: &IpvsClient, r: &mut Report) -> Result<(), Error> {
    let info = c.info().await?;
    r.check(
        &format!("info version {}", info.version),
        info.conn_table_size > 0,
        info,
    );

    let k = key(Protocol::Tcp, "10.0.0.50:80");
    let svc = Service::new(k, Scheduler::Wrr);
    c.add_service(&svc).await?;
    let e = c.add_service(&svc).await.unwrap_err();
    r.check(
        "duplicate service is EEXIST",
        e.to_string() == "service tcp 10.0.0.50:80: File exists (EEXIST)",
        e.to_string(),
    );
    let e = c
        .delete_destination(&k, sock("172.16.0.199:80"))
        .await
        .unwrap_err();
    r.check(
        "missing destination is ENOENT",
        e.to_string()
            == "destination 172.16.0.199:80 of service tcp 10.0.0.50:80: No such file or directory (ENOENT)",
        e.to_string(),
    );
    let e = c
        .delete_service(&key(Protocol::Tcp, "10.0.0.51:80"))
        .await
        .unwrap_err();
    r.check(
        "missing service is not-found",
        e.is_not_found(),
        e.to_string(),
    );
    let twos = Service::new(key(Protocol::Tcp, "10.0.0.52:80"), Scheduler::Twos);
    let e = c.add_service(&twos).await;
    println!("info twos on this kernel: {e:?}");

    // edits keep the object, change fields
    let d = dest("172.16.0.10:80", Forwarding::Route, 1, 0, 0);
    c.add_destination(&k, &d).await?;
    let mut edited = svc.clone();
    edited.scheduler = Scheduler::Sh;
    edited.sched_flags = SchedFlags::PORT;
    c.edit_service(&edited).await?;
    let heavier = Destination { weight: 7, ..d };
    c.edit_destination(&k, &heavier).await?;
    let got = c.service(&k).await?.map(|s| s.service);
    r.check(
        "edit service reads back",
        got.as_ref() == Some(&edited),
        got,
    );
    let ds: Vec<_> = c
        .destinations(&k)
        .await?
        .into_iter()
        .map(|o| o.destination)
        .collect();
    r.check("edit destination reads back", ds == vec![heavier], ds);
    r.check(
        "get of a missing service is None",
        c.service(&key(Protocol::Tcp, "10.0.0.51:80"))
            .await?
            .is_none(),
        (),
    );
    c.delete_destination(&k, d.addr).await?;
    c.delete_service(&k).await?;
    r.check("deleted", c.service(&k).await?.is_none(), ());

    // timeouts
    let before = c.timeouts().await?;
    c.set_timeouts(&Timeouts {
        tcp: 901,
        tcp_fin: 0,
        udp: 301,
    })
    .await?;
    let after = c.timeouts().await?;
    r.check(
        "timeouts set (0 keeps tcp_fin)",
        after
            == Timeouts {
                tcp: 901,
                tcp_fin: before.tcp_fin,
                udp: 301,
            },
        (before, after),
    );

    // sync daemons
    let master = SyncDaemon {
        state: SyncState::Master,
        mcast_ifname: "v0".into(),
        syncid: 7,
        maxlen: Some(1400),
        mcast_group: Some("239.1.2.3".parse().unwrap()),
        mcast_port: Some(9000),
        mcast_ttl: Some(2),
    };
    let backup = SyncDaemon {
        state: SyncState::Backup,
        mcast_ifname: "v0".into(),
        syncid: 0,
        maxlen: None,
        mcast_group: Some("ff15::81".parse().unwrap()),
        mcast_port: None,
        mcast_ttl: None,
    };
    c.start_sync_daemon(&master).await?;
    c.start_sync_daemon(&backup).await?;
    let e = c.start_sync_daemon(&master).await.unwrap_err();
    r.check(
        "second master is EEXIST",
        e.is_already_exists(),
        e.to_string(),
    );
    let ds = c.sync_daemons().await?;
    r.check("master dump", ds.contains(&master), &ds);
    let want_backup = SyncDaemon {
        maxlen: ds
            .iter()
            .find(|d| d.state == SyncState::Backup)
            .and_then(|d| d.maxlen),
        mcast_port: Some(SyncDaemon::DEFAULT_PORT),
        mcast_ttl: Some(1),
        ..backup
    };
    r.check(
        "backup dump (kernel defaults filled)",
        ds.contains(&want_backup),
        &ds,
    );
    println!("--- ipvsadm -L --daemon now:");
    let _ = std::process::Command::new("ipvsadm")
        .args(["-L", "--daemon"])
        .status();
    c.stop_sync_daemon(SyncState::Backup).await?;
    c.stop_sync_daemon(SyncState::Master).await?;
    let e = c.stop_sync_daemon(SyncState::Master).await.unwrap_err();
    println!("info stop of a stopped daemon: {e}");
    r.check("daemons stopped", c.sync_daemons().await?.is_empty(), ());
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let mut r = Report { failed: 0 };
    let c = match IpvsClient::connect().await {
        Ok(c) => c,
        Err(e) => {
            println!("FAIL connect: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res = match mode.as_str() {
        "create" => {
            create(&c, &mut r).await;
            Ok(())
        }
        "check" => check(&c, &mut r).await,
        "misc" => misc(&c, &mut r).await,
        _ => {
            eprintln!("usage: ipvs_probe create|check|misc");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = res {
        r.check("unexpected error", false, e.to_string());
    }
    println!("probe {mode}: {} failed", r.failed);
    if r.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
