//! `lvs-agent import-keepalived`: keepalived.conf files, one per director, to this
//! project's cluster file and node files ([`syntax`] reads them, [`import`] maps
//! them, [`keywords`] says what becomes of each keyword). The files written pass
//! check-config, or nothing is written.

pub mod import;
pub mod keywords;
pub mod syntax;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// One import as the command line gives it.
pub struct Request {
    /// Each director's keepalived.conf, with the node id given for it, if any (else
    /// the file's name without `.conf`).
    pub files: Vec<(Option<String>, PathBuf)>,
    pub addresses: BTreeMap<String, IpAddr>,
    pub interfaces: BTreeMap<String, String>,
    pub cluster_name: String,
    pub key_file: String,
}

/// `ID=FILE` or `FILE`.
pub fn parse_file_arg(arg: &str) -> (Option<String>, PathBuf) {
    match arg.split_once('=') {
        Some((id, file)) if !id.is_empty() && !id.contains('/') => {
            (Some(id.to_owned()), PathBuf::from(file))
        }
        _ => (None, PathBuf::from(arg)),
    }
}

/// `ID=NAME` of `--interface`.
pub fn parse_interface_arg(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((id, name)) if !id.is_empty() && !name.is_empty() => {
            Ok((id.to_owned(), name.to_owned()))
        }
        _ => Err(format!("--interface {arg:?}: write it as ID=NAME")),
    }
}

/// `ID=ADDRESS` of `--address`.
pub fn parse_address_arg(arg: &str) -> Result<(String, IpAddr), String> {
    let (id, addr) = arg
        .split_once('=')
        .ok_or_else(|| format!("--address {arg:?}: write it as ID=ADDRESS"))?;
    let addr = addr
        .parse()
        .map_err(|_| format!("--address {arg:?}: {addr:?} is not an IP address"))?;
    Ok((id.to_owned(), addr))
}

/// Reads, maps and checks: the files to write, and the notes on what was not
/// imported exactly.
pub fn run(request: &Request) -> Result<import::Imported, String> {
    let mut directors = Vec::new();
    let mut seen = BTreeSet::new();
    for (id, path) in &request.files {
        let id = match id {
            Some(id) => id.clone(),
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    format!("{}: no file name to take a node id from", path.display())
                })?,
        };
        if !seen.insert(id.clone()) {
            return Err(format!(
                "two directors named {id}: name them with ID=FILE (e.g. lb1={})",
                path.display()
            ));
        }
        // The node id is the config id `@` conditionals compare with (keepalived -i).
        let stmts = syntax::read(&mut syntax::Disk, path, &id).map_err(|e| e.to_string())?;
        directors.push(import::Director { id, stmts });
    }
    for (option, id) in request
        .addresses
        .keys()
        .map(|id| ("--address", id))
        .chain(request.interfaces.keys().map(|id| ("--interface", id)))
    {
        if !seen.contains(id) {
            return Err(format!(
                "{option} {id}=...: no director {id} among the files"
            ));
        }
    }
    let options = import::Options {
        cluster_name: request.cluster_name.clone(),
        addresses: request.addresses.clone(),
        interfaces: request.interfaces.clone(),
        key_file: request.key_file.clone(),
    };
    let imported = import::import(&directors, &options).map_err(|e| e.to_string())?;
    check(&imported)?;
    Ok(imported)
}

/// Every node file with the cluster file must pass check-config's validation.
fn check(imported: &import::Imported) -> Result<(), String> {
    let (cluster, nodes) = imported
        .files
        .split_first()
        .expect("an import writes a cluster file");
    for (name, text) in nodes {
        if let Err(errors) = crate::config::parse(&format!("{text}\n{}", cluster.1)) {
            return Err(format!(
                "the imported {name} with {} does not pass check-config (keepalived accepts \
                 what lvs-mesh does not):\n{errors}",
                cluster.0
            ));
        }
    }
    Ok(())
}

/// Writes the files into `dir` (created if missing); refuses, writing nothing, when
/// any of them exists.
pub fn write(dir: &Path, files: &[(String, String)]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, _) in files {
        let path = dir.join(name);
        if path.exists() {
            return Err(format!(
                "{} exists: nothing written (move it away or choose another --out)",
                path.display()
            ));
        }
    }
    let mut written = Vec::new();
    for (name, text) in files {
        let tmp = dir.join(format!(".{name}.import"));
        let result = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()));
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            for t in &written {
                let _ = std::fs::remove_file(t);
            }
            return Err(format!("{}: {e}: nothing written", tmp.display()));
        }
        written.push(tmp);
    }
    for ((name, _), tmp) in files.iter().zip(&written) {
        std::fs::rename(tmp, dir.join(name))
            .map_err(|e| format!("{}: {e}", dir.join(name).display()))?;
    }
    Ok(())
}
