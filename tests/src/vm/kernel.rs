//! The guest kernel: Debian's `linux-image-cloud-amd64` (IPVS, bridge and veth as
//! modules), fetched with `apt-get download` once per package version and cached
//! under [`cache_dir`] as `kernel/<package>_<version>/root` (the unpacked package,
//! plus the `modules.dep` that `depmod` makes, since the package leaves that to
//! its postinst).
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The metapackage that depends on the current cloud kernel.
const METAPACKAGE: &str = "linux-image-cloud-amd64";
const COMPLETE: &str = "complete";

/// An unpacked kernel package.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>`, with `modules.dep`.
    pub modules_dir: PathBuf,
}

/// `${LVS_LAB_CACHE:-$HOME/.cache/lvs-mesh/lab}`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LVS_LAB_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/lvs-mesh/lab")
}

/// The versioned kernel package `apt-cache depends linux-image-cloud-amd64` names.
pub fn versioned_package(depends_output: &str) -> Option<&str> {
    depends_output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| {
            p.starts_with("linux-image-") && p.as_bytes().get(12).is_some_and(u8::is_ascii_digit)
        })
}

/// The `Version:` of `apt-cache show --no-all-versions` output.
pub fn package_version(show_output: &str) -> Option<&str> {
    show_output
        .lines()
        .find_map(|l| l.strip_prefix("Version:"))
        .map(str::trim)
}

/// The cached kernel for the candidate package version, fetching it if needed.
/// Without apt metadata (no `apt-get update` yet), falls back to the newest
/// cached kernel.
pub fn fetch(cache: &Path) -> Result<Kernel> {
    let kernels = cache.join("kernel");
    let key = match candidate() {
        Ok(key) => key,
        Err(e) => {
            return newest_cached(&kernels).with_context(|| {
                format!(
                    "{e:#}; and no kernel cached in {} (run deploy/lab/install-deps)",
                    kernels.display()
                )
            })
        }
    };
    let dir = kernels.join(format!("{}_{}", key.0, key.1));
    if !dir.join(COMPLETE).exists() {
        download(&key.0, &kernels, &dir)?;
    }
    unpacked(&dir)
}

fn candidate() -> Result<(String, String)> {
    let depends = apt_cache(&["depends", METAPACKAGE])?;
    let package = versioned_package(&depends)
        .with_context(|| format!("apt-cache depends {METAPACKAGE}: no linux-image-<version> dependency (run apt-get update)"))?
        .to_string();
    let show = apt_cache(&["show", "--no-all-versions", &package])?;
    let version = package_version(&show)
        .with_context(|| format!("apt-cache show {package}: no Version field"))?
        .to_string();
    Ok((package, version))
}

fn apt_cache(args: &[&str]) -> Result<String> {
    let out = Command::new("apt-cache")
        .args(args)
        .output()
        .context("cannot run apt-cache (a Debian host is needed to fetch the lab kernel)")?;
    if !out.status.success() {
        bail!(
            "apt-cache {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Downloads and unpacks `package` into `dir`, via a private temporary directory
/// renamed into place, so concurrent runs never see a half-unpacked kernel.
fn download(package: &str, kernels: &Path, dir: &Path) -> Result<()> {
    let tmp = kernels.join(format!(".tmp-{}-{package}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    eprintln!("lvs-lab: fetching {package} into {}", dir.display());
    run(Command::new("apt-get")
        .args(["download", "-qq", package])
        .current_dir(&tmp))?;
    let deb = std::fs::read_dir(&tmp)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download {package} left no .deb"))?;
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(tmp.join("root")))?;
    std::fs::remove_file(&deb)?;
    let release = release_of(&tmp)?;
    let modules = tmp.join("root/lib/modules").join(&release);
    if !modules.join("modules.dep").exists() {
        run(Command::new("depmod")
            .arg("-b")
            .arg(tmp.join("root"))
            .arg(&release))
        .context("depmod (package kmod) makes modules.dep")?;
    }
    std::fs::write(tmp.join(COMPLETE), "")?;
    if std::fs::rename(&tmp, dir).is_err() && dir.join(COMPLETE).exists() {
        // Another run cached the same kernel first.
        let _ = std::fs::remove_dir_all(&tmp);
    } else if !dir.join(COMPLETE).exists() {
        bail!("cannot move {} to {}", tmp.display(), dir.display());
    }
    Ok(())
}

fn newest_cached(kernels: &Path) -> Result<Kernel> {
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(kernels)
        .with_context(|| format!("read {}", kernels.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(COMPLETE).exists())
        .filter_map(|p| Some((p.join(COMPLETE).metadata().ok()?.modified().ok()?, p)))
        .collect();
    dirs.sort();
    let (_, dir) = dirs.pop().context("no cached kernel")?;
    unpacked(&dir)
}

fn release_of(dir: &Path) -> Result<String> {
    let modules = dir.join("root/lib/modules");
    let mut releases: Vec<String> = std::fs::read_dir(&modules)
        .with_context(|| format!("read {}", modules.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    match releases.len() {
        1 => Ok(releases.remove(0)),
        n => bail!(
            "{}: expected one kernel release, found {n}",
            modules.display()
        ),
    }
}

fn unpacked(dir: &Path) -> Result<Kernel> {
    let release = release_of(dir)?;
    let root = dir.join("root");
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{release}"));
    if !vmlinuz.exists() {
        bail!("{} missing", vmlinuz.display());
    }
    Ok(Kernel {
        modules_dir: root.join("lib/modules").join(&release),
        release,
        vmlinuz,
    })
}

fn run(command: &mut Command) -> Result<()> {
    let out = command
        .output()
        .with_context(|| format!("cannot run {:?}", command.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            command.get_program(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_apt_cache_output() {
        let depends = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-48-cloud-amd64\n";
        assert_eq!(
            versioned_package(depends),
            Some("linux-image-6.1.0-48-cloud-amd64")
        );
        assert_eq!(
            versioned_package("x\n  Depends: linux-image-cloud-amd64-foo\n"),
            None
        );
        let show = "Package: linux-image-6.1.0-48-cloud-amd64\nVersion: 6.1.172-1\nSize: 1\n";
        assert_eq!(package_version(show), Some("6.1.172-1"));
        assert_eq!(package_version("Package: x\n"), None);
    }
}
