//! What a virtual router does with a valid received advertisement
//! (RFC 5798 §6.4.2 Backup and §6.4.3 Master; RFC 3768 §6.4 is the same for v2).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::packet::{Advert, Version};

/// Our state in one virtual router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Master,
    Backup,
}

/// Our side of one virtual router, as far as a received advert matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Local {
    pub role: Role,
    pub version: Version,
    pub priority: u8,
    /// Our primary address on the interface: it breaks priority ties between masters.
    pub primary: IpAddr,
    /// Whether, as backup, we take over from a lower-priority master.
    pub preempt: bool,
    /// Our configured advertisement interval.
    pub advert_interval: Duration,
}

/// The action the advert calls for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// We are master and stay master: the advert is ignored.
    KeepMaster,
    /// We are master and the sender resigned (priority 0): advertise at once so backups
    /// do not wait for their skew time, then carry on as master.
    AdvertiseNow,
    /// The sender is the master: be (or become) backup and restart the master-down
    /// timer with `master_down`.
    Follow { master_down: Duration },
    /// We are backup and the master resigned (priority 0): become master when this skew
    /// time passes without another advert.
    TakeOverAfter(Duration),
    /// We are backup, preempting, with a higher priority than the sender: ignore it and let
    /// the master-down timer run out so we take over.
    IgnoreLowerPriority,
}

/// An advert that does not belong to a virtual router configured like ours: RFC 3768 §7.1
/// says to discard and log it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Mismatch {
    pub sender: IpAddr,
    pub vrid: u8,
    pub kind: MismatchKind,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VRRP from {} vrid {}: {}",
            self.sender, self.vrid, self.kind
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MismatchKind {
    #[error("{theirs} advert, but this router speaks {ours}")]
    Version { ours: Version, theirs: Version },
    /// VRRPv2 routers must agree on the interval; v3 backups learn the master's.
    #[error("advert interval {theirs:?}, but this VRRPv2 router is configured with {ours:?}")]
    Interval { ours: Duration, theirs: Duration },
}

/// Decides what `local` does with `advert`, a valid advert (decoded, auth checked) that
/// `sender` sent for our vrid.
pub fn decide(local: &Local, advert: &Advert, sender: IpAddr) -> Result<Decision, Mismatch> {
    let mismatch = |kind| Mismatch {
        sender,
        vrid: advert.vrid,
        kind,
    };
    if advert.version != local.version {
        return Err(mismatch(MismatchKind::Version {
            ours: local.version,
            theirs: advert.version,
        }));
    }
    let master_interval = advert.interval();
    if local.version == Version::V2 && master_interval != local.advert_interval {
        return Err(mismatch(MismatchKind::Interval {
            ours: local.advert_interval,
            theirs: master_interval,
        }));
    }
    let skew = skew_time(local.version, local.priority, master_interval);
    let follow = Decision::Follow {
        master_down: master_interval * 3 + skew,
    };
    Ok(match (local.role, advert.priority) {
        (Role::Master, 0) => Decision::AdvertiseNow,
        (Role::Master, theirs) => {
            let sender_wins =
                theirs > local.priority || (theirs == local.priority && sender > local.primary);
            if sender_wins {
                follow
            } else {
                Decision::KeepMaster
            }
        }
        (Role::Backup, 0) => Decision::TakeOverAfter(skew),
        (Role::Backup, theirs) => {
            if !local.preempt || theirs >= local.priority {
                follow
            } else {
                Decision::IgnoreLowerPriority
            }
        }
    })
}

/// Skew_Time: higher priorities wait less before taking over. v2: (256 - priority) / 256
/// seconds; v3: (256 - priority) / 256 of the master's advert interval.
pub fn skew_time(version: Version, priority: u8, master_interval: Duration) -> Duration {
    let unit = match version {
        Version::V2 => Duration::from_secs(1),
        Version::V3 => master_interval,
    };
    unit * (256 - u32::from(priority)) / 256
}

#[cfg(test)]
mod tests {
    use super::super::packet::Auth;
    use super::*;

    const OURS: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 5));
    const LOWER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 4));
    const HIGHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 6));

    fn local(role: Role, version: Version, preempt: bool) -> Local {
        Local {
            role,
            version,
            priority: 100,
            primary: OURS,
            preempt,
            advert_interval: Duration::from_secs(1),
        }
    }

    fn advert(version: Version, priority: u8) -> Advert {
        Advert {
            version,
            vrid: 50,
            priority,
            advert_interval: match version {
                Version::V2 => 1,
                Version::V3 => 100,
            },
            addresses: vec![IpAddr::from([192, 0, 2, 10])],
            auth: Auth::None,
        }
    }

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn master_yields_to_higher_priority_and_to_equal_priority_with_higher_address() {
        for version in [Version::V2, Version::V3] {
            let me = local(Role::Master, version, true);
            let follow = Ok(Decision::Follow {
                // 3 * 1 s + (256 - 100) / 256 s
                master_down: ms(3000) + Duration::from_nanos(609_375_000),
            });
            assert_eq!(decide(&me, &advert(version, 101), LOWER), follow);
            assert_eq!(decide(&me, &advert(version, 100), HIGHER), follow);
            assert_eq!(
                decide(&me, &advert(version, 100), LOWER),
                Ok(Decision::KeepMaster)
            );
            assert_eq!(
                decide(&me, &advert(version, 99), HIGHER),
                Ok(Decision::KeepMaster)
            );
        }
    }

    #[test]
    fn priority_zero_makes_the_master_advertise_and_the_backup_take_over_after_skew() {
        let master = local(Role::Master, Version::V3, true);
        assert_eq!(
            decide(&master, &advert(Version::V3, 0), HIGHER),
            Ok(Decision::AdvertiseNow)
        );
        let backup = local(Role::Backup, Version::V3, false);
        assert_eq!(
            decide(&backup, &advert(Version::V3, 0), HIGHER),
            Ok(Decision::TakeOverAfter(Duration::from_nanos(609_375_000)))
        );
    }

    #[test]
    fn preempting_backup_ignores_a_lower_priority_master_and_follows_others() {
        let backup = local(Role::Backup, Version::V2, true);
        assert_eq!(
            decide(&backup, &advert(Version::V2, 99), HIGHER),
            Ok(Decision::IgnoreLowerPriority)
        );
        assert!(matches!(
            decide(&backup, &advert(Version::V2, 100), LOWER),
            Ok(Decision::Follow { .. })
        ));
        let nopreempt = local(Role::Backup, Version::V2, false);
        assert!(matches!(
            decide(&nopreempt, &advert(Version::V2, 1), LOWER),
            Ok(Decision::Follow { .. })
        ));
    }

    #[test]
    fn v3_backup_learns_the_master_interval() {
        let backup = local(Role::Backup, Version::V3, true);
        let mut fast = advert(Version::V3, 200);
        fast.advert_interval = 50;
        // 3 * 500 ms + (256 - 100) * 500 ms / 256
        assert_eq!(
            decide(&backup, &fast, HIGHER),
            Ok(Decision::Follow {
                master_down: ms(1500) + Duration::from_nanos(304_687_500)
            })
        );
    }

    #[test]
    fn mismatched_version_or_v2_interval_is_refused_with_the_sender_named() {
        let backup = local(Role::Backup, Version::V2, true);
        let err = decide(&backup, &advert(Version::V3, 100), HIGHER).unwrap_err();
        assert_eq!(
            err.to_string(),
            "VRRP from 192.0.2.6 vrid 50: VRRPv3 advert, but this router speaks VRRPv2"
        );
        let mut slow = advert(Version::V2, 100);
        slow.advert_interval = 2;
        let err = decide(&backup, &slow, HIGHER).unwrap_err();
        assert_eq!(
            err.to_string(),
            "VRRP from 192.0.2.6 vrid 50: advert interval 2s, but this VRRPv2 router is configured with 1s"
        );
    }

    #[test]
    fn skew_time_shrinks_as_priority_grows() {
        assert_eq!(
            skew_time(Version::V2, 255, Duration::from_secs(9)),
            Duration::from_secs(1) / 256
        );
        assert_eq!(skew_time(Version::V3, 0, ms(1000)), ms(1000));
        assert_eq!(skew_time(Version::V3, 128, ms(1000)), ms(500));
    }
}
