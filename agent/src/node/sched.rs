//! Real-time scheduling of the agent's threads (`[node] rt_priority`, keepalived's
//! `vrrp_rt_priority`): adverts, heartbeats and hand-overs run before the normal
//! processes of a busy director. In the lab VM (`deploy/lab/run seed_ha`: clients, real
//! servers and both directors on 2 TCG vCPUs) the time without holder at fail-back was
//! 34-61 ms in 4 cycles at priority 5, 48-148 ms in 2 at normal priority.
//!
//! SCHED_RR with SCHED_RESET_ON_FORK on the threads running when it is applied (the
//! main thread and the async runtime's workers). Threads created later and every
//! process the agent starts (notify scripts, `misc_check`) run at normal priority: the
//! health probes' thread among them, so thousands of probes never run ahead of the
//! machine's other work. The kernel keeps 5% of each CPU for normal tasks
//! (`kernel.sched_rt_runtime_us`), so a runaway agent cannot lock a director.
//!
//! sched_setscheduler(2) has no safe wrapper in nix or rustix: the two calls below are
//! the module's only unsafe code.
#![allow(unsafe_code)]

use std::io;

/// SCHED_RR at `priority` (1..=99) for every thread of this process; 0 leaves them as
/// they are. Returns the number of threads set. On error (no CAP_SYS_NICE, an
/// RLIMIT_RTPRIO below `priority`) no thread is left half-set.
pub fn realtime(priority: u8) -> io::Result<usize> {
    if priority == 0 {
        return Ok(0);
    }
    let threads = threads()?;
    let param = libc::sched_param {
        sched_priority: i32::from(priority),
    };
    for (i, &tid) in threads.iter().enumerate() {
        // SAFETY: a plain syscall on a thread id of this process with a valid param.
        let rc = unsafe {
            libc::sched_setscheduler(tid, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &param)
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            for &done in &threads[..i] {
                normal(done);
            }
            return Err(e);
        }
    }
    Ok(threads.len())
}

fn normal(tid: libc::pid_t) {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: as above; going back to SCHED_OTHER needs no privilege.
    unsafe { libc::sched_setscheduler(tid, libc::SCHED_OTHER, &param) };
}

/// The ids of this process's threads.
fn threads() -> io::Result<Vec<libc::pid_t>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task")? {
        if let Some(tid) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) {
            ids.push(tid);
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_changes_nothing() {
        assert_eq!(realtime(0).unwrap(), 0);
    }

    #[test]
    fn the_process_threads_are_listed() {
        let ids = threads().unwrap();
        let pid = libc::pid_t::try_from(std::process::id()).unwrap();
        assert!(ids.contains(&pid), "{ids:?} lacks the main thread {pid}");
    }
}
