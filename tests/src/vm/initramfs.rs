//! Assembles the lab initramfs: busybox (+ applet links), iproute2's `ip`,
//! ipvsadm, keepalived, bash, tcpdump, nft when present, the project's binaries,
//! every shared library they link (by `ldd`), the kernel modules in load order,
//! and `/init` ([`INIT`]).
//!
//! Written uncompressed: under TCG the guest decompresses slowly, and qemu hands
//! an uncompressed image to the kernel just as well.
use super::cpio::Newc;
use super::kernel::Kernel;
use super::modules::{module_name, ModuleDep, OPTIONAL, REQUIRED, REQUIRED_SCHEDULERS};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The VM's `/init`.
pub const INIT: &str = include_str!("init.sh");

/// Where the project's binaries go in the guest (on its PATH).
pub const GUEST_BIN_DIR: &str = "/lvs/bin";

/// Host tools copied into the guest: guest path, host candidates, required.
const SYSTEM_BINARIES: &[(&str, &[&str], bool)] = &[
    (
        "sbin/ip",
        &["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"],
        true,
    ),
    (
        "usr/sbin/ipvsadm",
        &["/usr/sbin/ipvsadm", "/sbin/ipvsadm"],
        true,
    ),
    ("usr/sbin/keepalived", &["/usr/sbin/keepalived"], true),
    // The seed's notify scripts are bash; the fault recorder needs tcpdump.
    ("bin/bash", &["/bin/bash", "/usr/bin/bash"], true),
    (
        "usr/bin/tcpdump",
        &["/usr/bin/tcpdump", "/usr/sbin/tcpdump"],
        true,
    ),
    ("usr/sbin/nft", &["/usr/sbin/nft"], false),
    // The fault recorder runs `ip monitor` at real-time priority (holders.rs).
    ("usr/bin/chrt", &["/usr/bin/chrt", "/bin/chrt"], true),
];

const PROFILE: &str = "export PATH=/sbin:/usr/sbin:/bin:/usr/bin:/lvs/bin
alias ip=/sbin/ip
PS1='lab# '
";

/// Host binaries to put in [`GUEST_BIN_DIR`] (stripped of debug info).
#[derive(Debug, Clone)]
pub struct GuestBinaries(pub Vec<PathBuf>);

/// The image and what went into it.
#[derive(Debug)]
pub struct Initramfs {
    pub image: Vec<u8>,
    pub modules: Vec<String>,
}

/// Builds the image; `scratch` holds stripped copies of binaries meanwhile.
pub fn build(kernel: &Kernel, binaries: &GuestBinaries, scratch: &Path) -> Result<Initramfs> {
    let mut a = Newc::new();
    for dir in ["proc", "sys", "dev", "run", "tmp", "root", "etc/keepalived"] {
        a.dir(dir);
    }
    a.symlink("var/run", "../run");
    // The kernel opens /dev/console for /init before devtmpfs is mounted.
    a.char_device("dev/console", 0o600, 5, 1);
    a.file("init", 0o755, INIT.as_bytes());
    // tcpdump drops to its own user once capturing (Debian's build).
    a.file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\ntcpdump:x:100:100::/nonexistent:/bin/false\n",
    );
    a.file("etc/group", 0o644, b"root:x:0:\ntcpdump:x:100:\n");
    a.file("etc/profile", 0o644, PROFILE.as_bytes());
    add_busybox(&mut a)?;
    for (guest, candidates, required) in SYSTEM_BINARIES {
        match candidates.iter().map(Path::new).find(|p| p.exists()) {
            Some(host) => add_dynamic(&mut a, host, guest, None)?,
            None if *required => bail!(
                "{} not found (looked at {}): run deploy/lab/install-deps",
                guest.rsplit('/').next().unwrap_or(guest),
                candidates.join(" ")
            ),
            None => {}
        }
    }
    for bin in &binaries.0 {
        let name = bin.file_name().context("binary path without a file name")?;
        let guest = format!("{GUEST_BIN_DIR}/{}", name.to_string_lossy());
        add_dynamic(&mut a, bin, &guest, Some(scratch))?;
    }
    let modules = add_modules(&mut a, kernel)?;
    Ok(Initramfs {
        image: a.finish(),
        modules,
    })
}

fn add_busybox(a: &mut Newc) -> Result<()> {
    let busybox = ["/usr/bin/busybox", "/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("busybox not found: run deploy/lab/install-deps (package busybox-static)")?;
    if !ldd(Path::new(busybox))?.is_empty() {
        bail!("{busybox} is dynamically linked: install busybox-static");
    }
    a.file("bin/busybox", 0o755, &read(Path::new(busybox))?);
    let list = Command::new(busybox).arg("--list").output()?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        // iproute2's ip replaces busybox's (which lacks netns).
        if applet != "ip" && applet != "busybox" && !a.contains(&format!("bin/{applet}")) {
            a.symlink(&format!("bin/{applet}"), "busybox");
        }
    }
    Ok(())
}

/// Adds `host` as `guest` with its shared libraries (and the dynamic loader) at
/// the paths `ldd` names. With `strip_into`, debug info is stripped first.
fn add_dynamic(a: &mut Newc, host: &Path, guest: &str, strip_into: Option<&Path>) -> Result<()> {
    let data = match strip_into {
        Some(scratch) => stripped(host, scratch)?,
        None => read(host)?,
    };
    a.file(guest, 0o755, &data);
    for lib in ldd(host)? {
        if !a.contains(&lib) {
            a.file(&lib, 0o755, &read(Path::new(&lib))?);
        }
    }
    Ok(())
}

/// Library paths in `ldd` output (`name => /path (addr)` and `/loader (addr)`).
pub fn ldd_paths(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| {
            let target = l.split_once("=>").map_or(l, |(_, t)| t);
            target
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/'))
        })
        .map(str::to_string)
        .collect()
}

fn ldd(binary: &Path) -> Result<Vec<String>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("cannot run ldd")?;
    // ldd exits non-zero for static binaries ("not a dynamic executable").
    Ok(ldd_paths(&String::from_utf8_lossy(&out.stdout)))
}

fn stripped(binary: &Path, scratch: &Path) -> Result<Vec<u8>> {
    let name = binary
        .file_name()
        .context("binary path without a file name")?;
    let out = scratch.join(name);
    let status = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&out)
        .arg(binary)
        .status();
    match status {
        Ok(s) if s.success() => read(&out),
        // No binutils: a bigger image, same behaviour.
        _ => read(binary),
    }
}

fn add_modules(a: &mut Newc, kernel: &Kernel) -> Result<Vec<String>> {
    let dep_file = kernel.modules_dir.join("modules.dep");
    let dep = ModuleDep::parse(
        &std::fs::read_to_string(&dep_file)
            .with_context(|| format!("read {}", dep_file.display()))?,
    )?;
    let schedulers = dep.ipvs_schedulers();
    for s in REQUIRED_SCHEDULERS {
        if !schedulers.iter().any(|x| x == s) {
            bail!("kernel {} has no IPVS scheduler {s}", kernel.release);
        }
    }
    let wanted: Vec<String> = REQUIRED
        .iter()
        .map(|s| s.to_string())
        .chain(schedulers)
        .collect();
    let mut order = String::new();
    let mut names = Vec::new();
    for path in dep.load_order(&wanted, OPTIONAL)? {
        let name = module_name(&path);
        let file = format!("{name}.ko");
        a.file(
            &format!("mods/{file}"),
            0o644,
            &module_bytes(&kernel.modules_dir.join(&path))?,
        );
        order.push_str(&file);
        order.push('\n');
        names.push(name);
    }
    a.file("mods/order", 0o644, order.as_bytes());
    Ok(names)
}

/// A module file, decompressed (busybox insmod loads plain ELF only).
fn module_bytes(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".ko.xz") {
        "xz"
    } else if name.ends_with(".ko.zst") {
        "zstd"
    } else if name.ends_with(".ko.gz") {
        "gzip"
    } else {
        return read(path);
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .with_context(|| format!("cannot run {tool} to decompress {name}"))?;
    if !out.status.success() {
        bail!(
            "{tool} -dc {name} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("read {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ldd_output() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibpopt.so.0 => /lib/x86_64-linux-gnu/libpopt.so.0 (0x00007f)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n\
                   \tlibmissing.so => not found\n";
        assert_eq!(
            ldd_paths(out),
            [
                "/lib/x86_64-linux-gnu/libpopt.so.0",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
        assert!(ldd_paths("\tnot a dynamic executable\n").is_empty());
    }
}
