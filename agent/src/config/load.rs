//! Loading: TOML file (syntax errors with line and column) parsed straight into
//! figment's value tree, `LVS_*` environment overrides read by figment and merged into
//! it, then deserialized with key paths on errors.

use super::error::{ConfigError, ConfigErrors, Location};
use super::model::{ClusterConfig, Config, ConfigFile, NodeConfig};
use super::validate::validate;
use figment::error::Kind;
use figment::providers::Env;
use figment::value::{Dict, Value};
use figment::Figment;
use std::path::Path;

/// Prefix of environment overrides: `LVS_NODE__SYNCID=3` sets `node.syncid`.
pub const ENV_PREFIX: &str = "LVS_";
const ENV_SPLIT: &str = "__";

/// Loads, merges environment overrides into, and validates one config file.
pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path.as_ref())
        .map_err(|e| ConfigError::file(format!("cannot read: {e}")))?;
    from_toml(&text, true)
}

/// Parses and validates config text without environment overrides (tests, and cluster
/// documents received from peers).
pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
    from_toml(text, false)
}

/// Loads several files as one config (`lvs-agent run -c node.toml -c cluster.toml`):
/// their top-level tables are merged, a table being allowed in one file only, then
/// environment overrides and validation apply to the whole. Errors about one file
/// (unreadable, TOML syntax, a table it repeats) start with its path.
pub fn load_all<P: AsRef<Path>>(paths: &[P]) -> Result<Config, ConfigErrors> {
    let mut merged = Dict::new();
    let mut origin = std::collections::BTreeMap::new();
    for path in paths {
        let path = path.as_ref();
        let in_file = |e: ConfigError| ConfigError::file(format!("{}: {e}", path.display()));
        let text = std::fs::read_to_string(path)
            .map_err(|e| in_file(ConfigError::file(format!("cannot read: {e}"))))?;
        let table: Dict = toml::from_str(&text).map_err(|e| in_file(syntax_error(&text, &e)))?;
        for (key, value) in table {
            if let Some(first) = origin.insert(key.clone(), path) {
                return Err(in_file(ConfigError::at(
                    &key,
                    format!("already given in {}", first.display()),
                ))
                .into());
            }
            merged.insert(key, value);
        }
    }
    build_table(merged, true).map_err(name_env_sources)
}

/// Parses a cluster document (`lvs-cli apply`, or fetched from a peer) and validates it
/// with this node's node part, as `check-config` does the two files. A document holds
/// the cluster part only.
pub fn parse_document(text: &str, node: &NodeConfig) -> Result<ClusterConfig, ConfigErrors> {
    let table: Dict = toml::from_str(text).map_err(|e| syntax_error(text, &e))?;
    if table.contains_key("node") {
        return Err(ConfigError::at(
            "node",
            "not in a cluster document: it holds the cluster part only, [node] stays in \
             each node's own file",
        )
        .into());
    }
    let Some(cluster) = build_table(table, false)?.cluster else {
        return Err(ConfigError::at(
            "cluster",
            "missing: a cluster document needs [cluster] name",
        )
        .into());
    };
    let whole = Config {
        node: Some(node.clone()),
        cluster: Some(cluster),
    };
    let errors = validate(&whole);
    match whole.cluster {
        Some(cluster) if errors.is_empty() => Ok(cluster),
        _ => Err(ConfigErrors(errors)),
    }
}

fn from_toml(text: &str, with_env: bool) -> Result<Config, ConfigErrors> {
    let result = toml::from_str(text)
        .map_err(|e| syntax_error(text, &e).into())
        .and_then(|table| build_table(table, with_env));
    if with_env {
        result.map_err(name_env_sources)
    } else {
        result
    }
}

fn build_table(mut table: Dict, with_env: bool) -> Result<Config, ConfigErrors> {
    if with_env {
        // Only nested keys: every top-level key is a table, and this keeps unrelated
        // `LVS_*` variables (e.g. of the lab harness) out of the config.
        let overrides: Dict = Figment::from(
            Env::prefixed(ENV_PREFIX)
                .filter(|k| k.as_str().contains(ENV_SPLIT))
                .split(ENV_SPLIT),
        )
        .extract()
        .map_err(|e| ConfigError::file(e.kind.to_string()))?;
        merge(&mut table, overrides);
    }
    let value = Value::from(table);
    let file: ConfigFile = serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        let reason = readable(e.into_inner().kind);
        if path == "." {
            ConfigError::file(reason)
        } else {
            ConfigError::at(path, reason)
        }
    })?;
    drop(value);
    let config = assemble(file)?;
    let errors = validate(&config);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Figment's merge in place: an override replaces the file's value, except that two
/// tables merge key by key. Giving figment the file too would cost two more copies of
/// its whole tree (the provider's, and the merged one `extract` clones), which for a
/// large cluster file is most of the load's peak memory.
fn merge(into: &mut Dict, overrides: Dict) {
    for (key, value) in overrides {
        match (into.get_mut(&key), value) {
            (Some(Value::Dict(_, old)), Value::Dict(_, new)) => merge(old, new),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// Serde's wording, in config terms: "key" not "field", "integer" not "i64".
fn readable(kind: Kind) -> String {
    let expected = |e: &str| match e {
        "i64" => "an integer".to_owned(),
        "f64" => "a number of seconds".to_owned(),
        "a string" | "string" => "a string".to_owned(),
        other => other.to_owned(),
    };
    match kind {
        Kind::UnknownField(key, valid) => {
            format!("unknown key {key:?} (valid: {})", valid.join(", "))
        }
        Kind::MissingField(key) => format!("missing key {key:?}"),
        Kind::InvalidType(actual, want) => format!("expected {}, found {actual}", expected(&want)),
        other => other.to_string(),
    }
}

fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let start = e.span().map_or(0, |s| s.start).min(text.len());
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    ConfigError {
        location: Location::Line { line, column },
        reason: format!("invalid TOML: {}", e.message().trim_end()),
    }
}

/// Gathers the top-level cluster tables into one `ClusterConfig`.
fn assemble(file: ConfigFile) -> Result<Config, ConfigError> {
    let has_cluster_tables =
        file.sync.is_some() || !file.vip_group.is_empty() || !file.service.is_empty();
    let cluster = match file.cluster {
        Some(c) => Some(ClusterConfig {
            name: c.name,
            vrrp_obey: c.vrrp_obey,
            sync: file.sync.unwrap_or_default(),
            vip_groups: file.vip_group,
            services: file.service,
        }),
        None if has_cluster_tables => {
            return Err(ConfigError::at(
                "cluster",
                "missing: a file with sync, vip_group or service tables needs [cluster] name",
            ))
        }
        None => None,
    };
    if file.node.is_none() && cluster.is_none() {
        return Err(ConfigError::file("no [node] and no [cluster] table"));
    }
    Ok(Config {
        node: file.node,
        cluster,
    })
}

/// Appends the environment variable that set a key, so an override is not mistaken for
/// the file's value.
fn name_env_sources(mut errors: ConfigErrors) -> ConfigErrors {
    for e in &mut errors.0 {
        if let Location::Key(path) = &e.location {
            if path.contains('.') && !path.contains('[') {
                let var = format!("{ENV_PREFIX}{}", path.replace('.', ENV_SPLIT)).to_uppercase();
                if std::env::var_os(&var).is_some() {
                    e.reason
                        .push_str(&format!(" (set by environment variable {var})"));
                }
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::Serialized;
    use proptest::prelude::*;

    fn files(parts: &[(&str, &str)]) -> Vec<std::path::PathBuf> {
        let dir = std::env::temp_dir().join(format!("lvs-load-all-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        parts
            .iter()
            .map(|(name, text)| {
                let path = dir.join(name);
                std::fs::write(&path, text).unwrap();
                path
            })
            .collect()
    }

    const NODE: &str =
        "[node]\nid = \"lb1\"\ninterface = \"eth0\"\naddress = \"192.0.2.10\"\nsyncid = 1\n";

    /// Small nested tables whose keys often collide, with a table or a leaf at each key.
    fn dict() -> impl Strategy<Value = Dict> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::from),
            "[a-z]{0,3}".prop_map(Value::from)
        ];
        let value = leaf.prop_recursive(3, 16, 3, |inner| {
            prop::collection::btree_map("[abc]", inner, 0..3).prop_map(Value::from)
        });
        prop::collection::btree_map("[abc]", value, 0..4)
    }

    proptest! {
        #[test]
        fn merge_is_figments_merge(file in dict(), overrides in dict()) {
            let by_figment: Dict = Figment::from(Serialized::defaults(&file))
                .merge(Serialized::defaults(&overrides))
                .extract()
                .unwrap();
            let mut merged = file;
            merge(&mut merged, overrides);
            prop_assert_eq!(merged, by_figment);
        }
    }

    #[test]
    fn load_all_merges_node_and_cluster_files() {
        let paths = files(&[
            ("merge-node.toml", NODE),
            ("merge-cluster.toml", "[cluster]\nname = \"t\"\n"),
        ]);
        let config = load_all(&paths).unwrap();
        assert_eq!(config.node.unwrap().syncid, 1);
        assert_eq!(config.cluster.unwrap().name, "t");
    }

    #[test]
    fn load_all_names_the_file_of_a_file_error() {
        let paths = files(&[("twice-a.toml", NODE), ("twice-b.toml", NODE)]);
        let e = load_all(&paths).unwrap_err().to_string();
        assert!(e.starts_with(&paths[1].display().to_string()), "{e}");
        assert!(e.ends_with(&format!("node: already given in {}", paths[0].display())));
        let paths = files(&[("syntax.toml", "[node\n")]);
        let e = load_all(&paths).unwrap_err().to_string();
        assert!(e.contains("syntax.toml: line 1, column"), "{e}");
    }
}
