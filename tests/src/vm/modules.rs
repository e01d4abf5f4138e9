//! Which kernel modules go into the initramfs, in load order, resolved from the
//! kernel's `modules.dep` (so dependencies are never a hand list).
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashSet};

/// Modules every lab boot needs (their dependencies come from `modules.dep`).
pub const REQUIRED: &[&str] = &["ip_vs", "nf_conntrack", "veth", "bridge"];

/// Loaded when the kernel ships them: handy for later scenarios (VIPs on dummy
/// interfaces, IPVS tunnel mode, nft rules).
pub const OPTIONAL: &[&str] = &["dummy", "ipip", "nf_tables"];

/// IPVS modules under `netfilter/ipvs/` that are application helpers, not
/// schedulers: they pull in NAT and SIP conntrack, and no scenario uses them.
const IPVS_NOT_SCHEDULERS: &[&str] = &["ip_vs_ftp", "ip_vs_pe_sip"];

/// Schedulers the seed and the tests rely on; a kernel without them is an error.
pub const REQUIRED_SCHEDULERS: &[&str] = &["ip_vs_rr", "ip_vs_wrr", "ip_vs_lc", "ip_vs_wlc"];

/// `modules.dep`: module path (relative to the modules dir) → dependency paths.
#[derive(Debug, Default)]
pub struct ModuleDep {
    deps: BTreeMap<String, Vec<String>>,
    by_name: BTreeMap<String, String>,
}

/// `kernel/net/netfilter/ipvs/ip_vs_rr.ko.xz` → `ip_vs_rr` (dashes become
/// underscores, as the kernel names modules).
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

impl ModuleDep {
    pub fn parse(text: &str) -> Result<Self> {
        let mut dep = ModuleDep::default();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let (module, deps) = line
                .split_once(':')
                .with_context(|| format!("modules.dep line {}: no ':' in {line:?}", i + 1))?;
            let module = module.trim().to_string();
            dep.by_name.insert(module_name(&module), module.clone());
            dep.deps.insert(
                module,
                deps.split_whitespace().map(str::to_string).collect(),
            );
        }
        Ok(dep)
    }

    /// The path of module `name`, if the kernel has it.
    pub fn path(&self, name: &str) -> Option<&str> {
        self.by_name.get(name).map(String::as_str)
    }

    /// Every IPVS scheduler module the kernel ships (`ip_vs_rr`, `ip_vs_wrr`, ...).
    pub fn ipvs_schedulers(&self) -> Vec<String> {
        self.by_name
            .iter()
            .filter(|(name, path)| {
                path.contains("/netfilter/ipvs/")
                    && name.starts_with("ip_vs_")
                    && !IPVS_NOT_SCHEDULERS.contains(&name.as_str())
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Paths of `required` and the present `optional` modules plus all their
    /// dependencies, each after its dependencies.
    pub fn load_order(&self, required: &[String], optional: &[&str]) -> Result<Vec<String>> {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        for name in required {
            let path = self
                .path(name)
                .with_context(|| format!("kernel has no module {name} (not in modules.dep)"))?;
            self.visit(path, &mut seen, &mut order, 0)?;
        }
        for path in optional.iter().filter_map(|n| self.path(n)) {
            self.visit(path, &mut seen, &mut order, 0)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        path: &str,
        seen: &mut HashSet<String>,
        order: &mut Vec<String>,
        depth: usize,
    ) -> Result<()> {
        if depth > 64 {
            bail!("modules.dep: dependency cycle through {path}");
        }
        if seen.contains(path) {
            return Ok(());
        }
        let deps = self.deps.get(path).with_context(|| {
            format!("modules.dep names {path} as a dependency but has no line for it")
        })?;
        for d in deps {
            self.visit(d, seen, order, depth + 1)?;
        }
        seen.insert(path.to_string());
        order.push(path.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/lib/libcrc32c.ko:
kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko:
kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko:
kernel/net/netfilter/nf_conntrack.ko: kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/ipvs/ip_vs.ko: kernel/net/netfilter/nf_conntrack.ko kernel/net/ipv6/netfilter/nf_defrag_ipv6.ko kernel/net/ipv4/netfilter/nf_defrag_ipv4.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/ipvs/ip_vs_rr.ko.xz: kernel/net/netfilter/ipvs/ip_vs.ko
kernel/net/netfilter/ipvs/ip_vs_ftp.ko: kernel/net/netfilter/ipvs/ip_vs.ko
kernel/net/netfilter/ipvs/ip_vs_wrr.ko.zst: kernel/net/netfilter/ipvs/ip_vs.ko
kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/net/802/stp.ko: kernel/net/llc/llc.ko
kernel/net/llc/llc.ko:
kernel/drivers/net/veth.ko:
";

    #[test]
    fn resolves_dependencies_first_without_duplicates() {
        let dep = ModuleDep::parse(DEP).unwrap();
        assert_eq!(dep.ipvs_schedulers(), ["ip_vs_rr", "ip_vs_wrr"]);
        let want: Vec<String> = ["ip_vs_wrr", "bridge", "veth", "ip_vs"]
            .map(String::from)
            .to_vec();
        let order = dep.load_order(&want, &["dummy", "ip_vs_rr"]).unwrap();
        let names: Vec<String> = order.iter().map(|p| module_name(p)).collect();
        assert_eq!(
            names,
            [
                "nf_defrag_ipv6",
                "nf_defrag_ipv4",
                "libcrc32c",
                "nf_conntrack",
                "ip_vs",
                "ip_vs_wrr",
                "llc",
                "stp",
                "bridge",
                "veth",
                "ip_vs_rr"
            ]
        );
        for (i, path) in order.iter().enumerate() {
            for d in &dep.deps[path] {
                assert!(order[..i].contains(d), "{d} must load before {path}");
            }
        }
    }

    #[test]
    fn names_missing_modules_and_bad_lines() {
        let dep = ModuleDep::parse(DEP).unwrap();
        let e = dep.load_order(&["ip_vs_twos".into()], &[]).unwrap_err();
        assert!(e.to_string().contains("ip_vs_twos"), "{e}");
        let e = ModuleDep::parse("a.ko\n").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        let e = ModuleDep::parse("a.ko: b.ko\n")
            .unwrap()
            .load_order(&["a".into()], &[])
            .unwrap_err();
        assert!(e.to_string().contains("b.ko"), "{e}");
        assert_eq!(module_name("x/y/nf-foo.ko.zst"), "nf_foo");
    }
}
