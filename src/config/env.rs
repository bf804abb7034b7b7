//! `WAITTIMES__SECTION__KEY` environment variables as a figment provider whose source can be
//! injected (tests pass a map; the binary passes the process environment).

use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

/// Prefix of every override variable.
pub const ENV_PREFIX: &str = "WAITTIMES__";
/// Separator between path segments in a variable name.
pub const ENV_SEPARATOR: &str = "__";
/// The figment metadata name of this provider.
pub(crate) const ENV_SOURCE_NAME: &str = "environment variable";

/// The environment variable that overrides a dotted config key, e.g. `kafka.bootstrap_servers`
/// → `WAITTIMES__KAFKA__BOOTSTRAP_SERVERS`. Dots inside a `kafka.properties` key become `_`.
pub fn env_var_for(key: &str) -> String {
    env_var_for_path(&key.split('.').collect::<Vec<_>>())
}

fn env_var_for_path(path: &[&str]) -> String {
    let mut parts: Vec<String> = Vec::new();
    if path.len() > 2 && path[0] == "kafka" && path[1] == "properties" {
        parts.push("KAFKA".into());
        parts.push("PROPERTIES".into());
        parts.push(path[2..].join("_").replace('.', "_").to_ascii_uppercase());
    } else {
        parts.extend(path.iter().map(|p| p.to_ascii_uppercase()));
    }
    format!("{ENV_PREFIX}{}", parts.join(ENV_SEPARATOR))
}

/// Environment variables that override the config file.
///
/// Names are matched case-insensitively against `WAITTIMES__`, the rest is lowercased and split
/// at `__` into a key path: `WAITTIMES__TOPICS__DEAD_LETTER` → `topics.dead_letter`. Below
/// `WAITTIMES__KAFKA__PROPERTIES__`, the rest is one librdkafka property with `_` (and `__`)
/// read as `.`: `WAITTIMES__KAFKA__PROPERTIES__FETCH_MIN_BYTES` → `fetch.min.bytes` (no
/// librdkafka property has an `_` in its name). Values are always strings.
#[derive(Debug, Clone, Default)]
pub struct EnvVars {
    vars: Vec<(String, String)>,
}

impl EnvVars {
    /// The process environment (variables whose name or value is not UTF-8 are skipped).
    pub fn process() -> Self {
        Self::from_vars(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// An explicit set of variables (for tests and embedding); names without the prefix are
    /// ignored.
    pub fn from_vars<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let vars = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(k, _): &(String, String)| {
                k.len() > ENV_PREFIX.len()
                    && k.get(..ENV_PREFIX.len())
                        .is_some_and(|p| p.eq_ignore_ascii_case(ENV_PREFIX))
            })
            .collect();
        Self { vars }
    }

    /// The matching `(name, value)` pairs.
    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }

    /// The key path a variable name maps to, or why it cannot be used.
    pub(crate) fn path_of(name: &str) -> Result<Vec<String>, String> {
        let rest = name
            .get(ENV_PREFIX.len()..)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let segments: Vec<&str> = rest.split(ENV_SEPARATOR).collect();
        if segments.len() >= 3 && segments[0] == "kafka" && segments[1] == "properties" {
            let prop = segments[2..].join(".").replace('_', ".");
            if prop.split('.').any(str::is_empty) {
                return Err(format!(
                    "environment variable {name}: malformed property name"
                ));
            }
            return Ok(vec!["kafka".into(), "properties".into(), prop]);
        }
        if segments.iter().any(|s| s.is_empty()) {
            return Err(format!(
                "environment variable {name}: empty key segment (use `__` only between section and key)"
            ));
        }
        Ok(segments.into_iter().map(str::to_owned).collect())
    }
}

impl Provider for EnvVars {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_SOURCE_NAME)
            .interpolater(|_: &Profile, keys: &[&str]| env_var_for_path(keys))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let mut root = Dict::new();
        for (name, value) in &self.vars {
            let path = Self::path_of(name).map_err(Error::from)?;
            insert(&mut root, &path, Value::from(value.clone())).map_err(|()| {
                Error::from(format!(
                    "environment variable {name} conflicts with another WAITTIMES__ variable"
                ))
            })?;
        }
        Ok(Profile::Default.collect(root))
    }
}

pub(super) fn insert(dict: &mut Dict, path: &[String], value: Value) -> Result<(), ()> {
    match path {
        [] => Err(()),
        [last] => {
            dict.insert(last.clone(), value);
            Ok(())
        }
        [head, rest @ ..] => {
            let entry = dict
                .entry(head.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            match entry {
                Value::Dict(_, inner) => insert(inner, rest, value),
                _ => Err(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_paths() {
        let p = |n: &str| EnvVars::path_of(n).unwrap().join("|");
        assert_eq!(
            p("WAITTIMES__KAFKA__BOOTSTRAP_SERVERS"),
            "kafka|bootstrap_servers"
        );
        assert_eq!(p("waittimes__Topics__Dead_Letter"), "topics|dead_letter");
        assert_eq!(
            p("WAITTIMES__KAFKA__PROPERTIES__FETCH_MIN_BYTES"),
            "kafka|properties|fetch.min.bytes"
        );
        assert_eq!(
            p("WAITTIMES__KAFKA__PROPERTIES__FETCH__MIN__BYTES"),
            "kafka|properties|fetch.min.bytes"
        );
        assert!(EnvVars::path_of("WAITTIMES__KAFKA____X").is_err());
        assert!(EnvVars::path_of("WAITTIMES__KAFKA__").is_err());
    }

    #[test]
    fn keys_map_to_names() {
        assert_eq!(
            env_var_for("kafka.bootstrap_servers"),
            "WAITTIMES__KAFKA__BOOTSTRAP_SERVERS"
        );
        assert_eq!(
            env_var_for("kafka.properties.fetch.min.bytes"),
            "WAITTIMES__KAFKA__PROPERTIES__FETCH_MIN_BYTES"
        );
        assert_eq!(
            env_var_for("topics.wait_times"),
            "WAITTIMES__TOPICS__WAIT_TIMES"
        );
    }

    #[test]
    fn other_variables_are_ignored() {
        let env = EnvVars::from_vars([
            ("WAITTIMES_CONFIG", "x"),
            ("PATH", "/bin"),
            ("WAITTIMES__LOG__LEVEL", "debug"),
        ]);
        assert_eq!(env.vars().len(), 1);
    }
}
