//! Host side of the lab: kernel fetch and cache ([`kernel`]), initramfs
//! ([`initramfs`]), qemu with deadlines ([`qemu`]), and [`Lab`] tying them together.
//!
//! In an integration test (tests/tests/*.rs):
//! ```ignore
//! let lab = lvs_tests::vm::Lab::new(env!("CARGO_BIN_EXE_lvs-lab-guest")).unwrap();
//! lab.run(&["seed_dr"]).unwrap().print_and_assert();
//! ```
pub mod cpio;
pub mod initramfs;
pub mod kernel;
pub mod modules;
pub mod qemu;

use crate::scenario::Scenario;
use crate::scenarios;
use anyhow::{bail, Context, Result};
use initramfs::GuestBinaries;
use kernel::Kernel;
use lvs_proto::v1::{GuestReady, ScenarioReport};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The project's binaries every lab image carries (from the same target dir as
/// the guest binary).
pub const PROJECT_BINARIES: &[&str] = &["lvs-agent", "lvs-cli"];

/// How long the guest may take from qemu start to ready (TCG takes a few seconds;
/// the margin is for a loaded CI machine).
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// A lab ready to boot: kernel fetched, binaries located.
#[derive(Debug, Clone)]
pub struct Lab {
    kernel: Kernel,
    binaries: GuestBinaries,
}

impl Lab {
    /// `guest_bin` is the `lvs-lab-guest` binary (in tests:
    /// `env!("CARGO_BIN_EXE_lvs-lab-guest")`); lvs-agent and lvs-cli must be built
    /// beside it. Fails, never skips, when qemu or the kernel is missing.
    pub fn new(guest_bin: impl Into<PathBuf>) -> Result<Lab> {
        let guest_bin = guest_bin.into();
        if !guest_bin.exists() {
            bail!("guest binary {} not built", guest_bin.display());
        }
        if !on_path(qemu::QEMU) {
            bail!("{} not found: run deploy/lab/install-deps", qemu::QEMU);
        }
        let dir = guest_bin
            .parent()
            .context("guest binary path has no directory")?;
        let mut binaries = vec![guest_bin.clone()];
        for name in PROJECT_BINARIES {
            let bin = dir.join(name);
            if !bin.exists() {
                bail!(
                    "{} not built: run `cargo build --workspace --bins` first (deploy/test and deploy/lab/run do)",
                    bin.display()
                );
            }
            binaries.push(bin);
        }
        let kernel = kernel::fetch(&kernel::cache_dir())?;
        Ok(Lab {
            kernel,
            binaries: GuestBinaries(binaries),
        })
    }

    /// Also puts `binary` (e.g. a test binary a scenario runs) in the guest's
    /// `/lvs/bin`, with its libraries.
    pub fn with_binary(mut self, binary: impl Into<PathBuf>) -> Self {
        self.binaries.0.push(binary.into());
        self
    }

    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// Boots once and runs `names` in order. Errors only for bad names or when the
    /// VM cannot be started; scenario failures are in the returned [`LabRun`].
    pub fn run(&self, names: &[&str]) -> Result<LabRun> {
        let scenarios = names
            .iter()
            .map(|n| {
                scenarios::find(n).with_context(|| {
                    format!("no scenario {n:?}; known: {}", scenarios::names().join(" "))
                })
            })
            .collect::<Result<Vec<&Scenario>>>()?;
        let work = WorkDir::new()?;
        let (initrd, image_info) = self.initrd(&work.0)?;
        let console = work.0.join("console.log");
        let boot = qemu::run_scenarios(&self.kernel, &initrd, &console, &scenarios, BOOT_TIMEOUT)?;
        let run = LabRun {
            kernel_release: self.kernel.release.clone(),
            image_info,
            boot_time: boot.boot_time,
            ready: boot.ready,
            reports: boot.reports,
            total: boot.total,
            kept: None,
        };
        if run.passed() {
            Ok(run)
        } else {
            Ok(LabRun {
                kept: Some(work.keep()),
                ..run
            })
        }
    }

    /// Boots with the seed topology built and a shell on this terminal.
    pub fn shell(&self) -> Result<()> {
        let work = WorkDir::new()?;
        let (initrd, info) = self.initrd(&work.0)?;
        eprintln!("lvs-lab: {info}; booting (exit the shell to power off, or Ctrl-A X)");
        let status = qemu::interactive(&self.kernel, &initrd, "lvs.mode=shell")?;
        if !status.success() {
            bail!("qemu exited {status}");
        }
        Ok(())
    }

    fn initrd(&self, work: &Path) -> Result<(PathBuf, String)> {
        let started = Instant::now();
        let image = initramfs::build(&self.kernel, &self.binaries, work)?;
        let path = work.join("initrd.cpio");
        std::fs::write(&path, &image.image).with_context(|| format!("write {}", path.display()))?;
        let schedulers: Vec<&str> = image
            .modules
            .iter()
            .filter_map(|m| m.strip_prefix("ip_vs_"))
            .collect();
        let info = format!(
            "initramfs {:.1} MB with {} modules (IPVS schedulers: {}) built in {:.1} s",
            image.image.len() as f64 / 1e6,
            image.modules.len(),
            schedulers.join(" "),
            started.elapsed().as_secs_f64()
        );
        Ok((path, info))
    }
}

/// The outcome of one boot.
#[derive(Debug, Clone)]
pub struct LabRun {
    pub kernel_release: String,
    pub image_info: String,
    /// qemu start to guest ready.
    pub boot_time: Option<Duration>,
    pub ready: Option<GuestReady>,
    pub reports: Vec<ScenarioReport>,
    /// qemu start to qemu exit.
    pub total: Duration,
    /// The work dir (initramfs, console.log), kept when something failed.
    pub kept: Option<PathBuf>,
}

impl LabRun {
    /// Every scenario passed and every module loaded.
    pub fn passed(&self) -> bool {
        self.failed_modules().is_empty() && self.reports.iter().all(|r| r.passed)
    }

    pub fn report(&self, name: &str) -> Option<&ScenarioReport> {
        self.reports.iter().find(|r| r.name == name)
    }

    fn failed_modules(&self) -> &[String] {
        self.ready.as_ref().map_or(&[], |r| &r.failed_modules)
    }

    /// Timing and verdict lines, with each failed scenario's failure (no scenario output).
    pub fn summary(&self) -> String {
        let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
        let mut s = format!(
            "lvs-lab: kernel {}; {}\n",
            self.kernel_release, self.image_info
        );
        s += &format!(
            "lvs-lab: boot {} (qemu start to guest ready; guest uptime {}), whole run {}\n",
            self.boot_time.map_or("never ready".into(), secs),
            self.ready
                .as_ref()
                .map_or("-".into(), |r| secs(Duration::from_millis(r.uptime_ms))),
            secs(self.total)
        );
        if !self.failed_modules().is_empty() {
            s += &format!(
                "lvs-lab: FAILED to load modules: {}\n",
                self.failed_modules().join(" ")
            );
        }
        for r in &self.reports {
            s += &format!(
                "lvs-lab: {} {} (scenario {})\n",
                r.name,
                if r.passed { "PASSED" } else { "FAILED" },
                secs(Duration::from_millis(r.duration_ms))
            );
            // The failed check again, so that a log cut to its head and tail (CI's)
            // still says what failed.
            if !r.passed {
                s += &format!("lvs-lab: {} failed: {}\n", r.name, r.failure);
            }
        }
        if let Some(dir) = &self.kept {
            s += &format!("lvs-lab: console log and image kept in {}\n", dir.display());
        }
        s
    }

    /// Prints each report's output, its failure, and the summary. A passed scenario
    /// that has headlines ([`crate::shell::Shell::say`]) shows only those unless
    /// `verbose`; a failed one shows everything.
    pub fn print(&self, verbose: bool) {
        for r in &self.reports {
            let short = crate::shell::headlines(&r.output);
            if verbose || !r.passed || short.is_empty() {
                println!("{}", r.output);
            } else {
                println!("{}", short.join("\n"));
            }
            if !r.passed {
                println!("=== {} FAILED: {}\n", r.name, r.failure);
            }
        }
        print!("{}", self.summary());
    }

    /// [`LabRun::print`], then panics unless [`LabRun::passed`].
    pub fn print_and_assert(&self) {
        self.print(true);
        assert!(self.passed(), "lab run failed:\n{}", self.summary());
    }
}

/// A per-run directory under the system temp dir, removed on drop unless kept.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> Result<Self> {
        static RUN: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lvs-lab-{}-{}",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(WorkDir(dir))
    }

    fn keep(self) -> PathBuf {
        let dir = self.0.clone();
        std::mem::forget(self);
        dir
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
}
