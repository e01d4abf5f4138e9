//! Every scenario the lab can run, by name. To add one: a `run(&mut Ctx)` function
//! in a module here and one line in [`ALL`].
use crate::scenario::Scenario;

mod agent;
mod agent_restart;
mod bench;
mod demo;
mod health;
mod health_bench;
mod health_kinds;
mod ipvs_drift;
mod ipvs_parity;
mod ipvs_sync;
mod probe;
pub(crate) mod realserver_tun;
mod seed_dr;
pub(crate) mod seed_ha;
mod selftest;
pub(crate) mod three_ha;

pub const ALL: &[Scenario] = &[
    Scenario {
        name: "seed_dr",
        about:
            "seed services on lb1 (DR, rs1 w1 / rs2 w2): wrr 1:2, lc, replies bypass the director",
        timeout_secs: 300,
        run: seed_dr::run,
    },
    Scenario {
        name: "demo",
        about: "the README demo: lvs-agent on lb1/lb2 from the seed files, lb3 joins, kill -9 of an owner, fail-back, 0 lost",
        timeout_secs: 600,
        run: demo::run,
    },
    Scenario {
        name: "seed_ha",
        about: "lvs-agent on lb1/lb2 from the seed example files, 100 long-lived connections per VIP at 10 and 1 lines/s: crash, outage batch, fail-back, 0 lost",
        timeout_secs: 600,
        run: seed_ha::agents,
    },
    Scenario {
        name: "seed_ha_mixed",
        about: "lb1 lvs-agent + lb2 the seed's keepalived: crash and fail-back of each side, 0 lost, sync both ways",
        timeout_secs: 600,
        run: seed_ha::mixed,
    },
    Scenario {
        name: "seed_ha_keepalived",
        about: "the seed's keepalived pair through the same cycles (figures for deploy/bench/seed-ha)",
        timeout_secs: 600,
        run: seed_ha::keepalived,
    },
    Scenario {
        name: "health_seed",
        about: "the seed's HTTP_GET run by lvs-agent on lb1/lb2: rs1's web server stops (out within 13 s, no failed connection) and starts (back with its weight)",
        timeout_secs: 180,
        run: health::agents,
    },
    Scenario {
        name: "health_seed_keepalived",
        about: "the same with the seed's keepalived pair (figures for deploy/bench/health)",
        timeout_secs: 180,
        run: health::keepalived,
    },
    Scenario {
        name: "health_kinds",
        about: "lvs-agent runs tcp_check (inhibit_on_failure), ssl_get (self-signed), misc_check (misc_dynamic), dns_check and a quorum with a sorry server: rs1 fails and recovers",
        timeout_secs: 180,
        run: health_kinds::run,
    },
    Scenario {
        name: "health_bench",
        about: "benchmark: 10,000 real servers with a TCP check at delay_loop 1 s and 20 s, keepalived's checker then lvs-agent: probes/s, CPU, RSS, every port closing and opening",
        timeout_secs: 1800,
        run: health_bench::run,
    },
    Scenario {
        name: "three_ha",
        about: "4 directors: the owner of each group crashes and returns, rolling restart, lb4 joins by `lvs-agent join` and leaves by SIGTERM; 0 lost, sync masters follow owners",
        timeout_secs: 900,
        run: three_ha::run,
    },
    Scenario {
        name: "ipvs_parity",
        about: "agent and binding vs ipvsadm on every IPVS feature (v4/v6, tcp/udp/sctp/fwmark, dr/nat/tun)",
        timeout_secs: 180,
        run: ipvs_parity::run,
    },
    Scenario {
        name: "realserver_tun",
        about: "a TUN service's real servers set up by `lvs-agent realserver up` (tunl0 up, VIP, rp_filter): fetches answered in IP-in-IP; `down` puts everything back",
        timeout_secs: 180,
        run: realserver_tun::run,
    },
    Scenario {
        name: "ipvs_drift",
        about: "lvs-agent run repairs services changed by hand, leaves other VIPs alone",
        timeout_secs: 180,
        run: ipvs_drift::run,
    },
    Scenario {
        name: "agent_restart",
        about: "kill -9 and restart lvs-agent under 50 long-lived DR connections: no reset, no re-create",
        timeout_secs: 300,
        run: agent_restart::run,
    },
    Scenario {
        name: "ipvs_sync",
        about: "3 directors: lb1's connections reach lb2/lb3 by IPVS sync; daemons as configured",
        timeout_secs: 300,
        run: ipvs_sync::run,
    },
    Scenario {
        name: "ipvs_bench",
        about: "benchmark: agent vs ipvsadm -R at 10,000 services x 4 (cold, no-op, one weight, 1,000 removed)",
        timeout_secs: 3600,
        run: bench::full,
    },
    Scenario {
        name: "ipvs_bench_smoke",
        about: "the benchmark at 1,000 services x 4 (CI)",
        timeout_secs: 900,
        run: bench::smoke,
    },
    Scenario {
        name: "selftest_ok",
        about: "harness self-test: passes",
        timeout_secs: 30,
        run: selftest::ok,
    },
    Scenario {
        name: "selftest_panic",
        about: "harness self-test: panics (must be reported failed, later scenarios still run)",
        timeout_secs: 30,
        run: selftest::panics,
    },
    Scenario {
        name: "selftest_hang",
        about: "harness self-test: never returns (the host must kill the VM at its deadline)",
        timeout_secs: 5,
        run: selftest::hangs,
    },
];

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    ALL.iter().find(|s| s.name == name)
}

/// Names of all scenarios, for error messages.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|s| s.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        let mut names = names();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        assert_eq!(find("seed_dr").unwrap().name, "seed_dr");
        assert!(find("nope").is_none());
    }
}
