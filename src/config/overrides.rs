//! Values a subcommand takes on its command line (`--bootstrap-servers`, `-X k=v`, …), merged
//! above the file and the environment so a flag always wins, and named as the flag in errors.

use std::collections::HashMap;
use std::sync::Arc;

use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

use super::env::{self, env_var_for};

/// The figment metadata name of this provider.
pub(crate) const FLAG_SOURCE_NAME: &str = "command-line flag";

/// Config keys set by command-line flags, each remembered with the flag that set it.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    /// Key path; a `kafka.properties` entry keeps its dotted property name as one segment.
    path: Vec<String>,
    flag: String,
    value: String,
}

impl Overrides {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a dotted config key (`kafka.bootstrap_servers`), given by `flag`.
    pub fn set(&mut self, key: &str, flag: &str, value: impl Into<String>) -> &mut Self {
        self.push(key.split('.').map(str::to_owned).collect(), flag, value)
    }

    /// Sets one librdkafka property under `kafka.properties` (`-X security.protocol=SSL`).
    pub fn kafka_property(
        &mut self,
        name: &str,
        flag: &str,
        value: impl Into<String>,
    ) -> &mut Self {
        let path = vec!["kafka".into(), "properties".into(), name.to_owned()];
        self.push(path, flag, value)
    }

    fn push(&mut self, path: Vec<String>, flag: &str, value: impl Into<String>) -> &mut Self {
        self.entries.retain(|e| e.path != path);
        self.entries.push(Entry {
            path,
            flag: flag.to_owned(),
            value: value.into(),
        });
        self
    }

    /// Adds `other`'s entries, replacing those for the same keys.
    pub fn extend(&mut self, other: &Overrides) -> &mut Self {
        for e in &other.entries {
            self.push(e.path.clone(), &e.flag, e.value.clone());
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The same overrides as `WAITTIMES__*` variables, for a child process that reads its
    /// configuration from the environment.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .map(|e| (env_var_for(&e.path.join(".")), e.value.clone()))
            .collect()
    }
}

impl Provider for Overrides {
    fn metadata(&self) -> Metadata {
        let flags: Arc<HashMap<Vec<String>, String>> = Arc::new(
            self.entries
                .iter()
                .map(|e| (e.path.clone(), e.flag.clone()))
                .collect(),
        );
        Metadata::named(FLAG_SOURCE_NAME).interpolater(move |_: &Profile, keys: &[&str]| {
            let path: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
            flags.get(&path).cloned().unwrap_or_else(|| path.join("."))
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let mut root = Dict::new();
        for e in &self.entries {
            env::insert(&mut root, &e.path, Value::from(e.value.clone()))
                .map_err(|()| Error::from(format!("flag {} conflicts with another", e.flag)))?;
        }
        Ok(Profile::Default.collect(root))
    }
}
