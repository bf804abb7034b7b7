//! The configuration error type and the mapping from figment's errors (naming the key and the
//! file or environment variable it came from, never a secret value).

use std::io;
use std::path::PathBuf;

use figment::{Figment, Metadata, Profile, Source};

use super::secret::is_secret_key;
use super::{env, overrides};

/// A configuration error. Messages name the key and where its value came from, and never
/// contain a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The config file could not be read.
    #[error("cannot read config file `{}`: {source}", path.display())]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The config file is not valid TOML.
    #[error("config file `{}` is not valid TOML: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Parser message (the offending line itself is left out).
        message: String,
    },
    /// A key the service does not know.
    #[error("unknown key `{key}`{}{}", show_origin(.origin), show_expected(.expected))]
    UnknownKey {
        /// Dotted key path.
        key: String,
        /// Where it came from, e.g. `from env WAITTIMES__KAFKA__X` or `in config file `a.toml``.
        origin: Option<String>,
        /// Known keys at that level.
        expected: Vec<String>,
    },
    /// A value that is not acceptable.
    #[error("invalid value for `{key}`{}: {message}", show_origin(.origin))]
    InvalidValue {
        /// Dotted key path.
        key: String,
        /// Where it came from.
        origin: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A file named by a key could not be read.
    #[error("cannot read `{}` (named by `{key}`): {source}", path.display())]
    ReadFile {
        /// The key naming the file.
        key: String,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A bad entry inside a `.properties` file named by a key.
    #[error("invalid `{property}` in `{}` (named by `{key}`): {message}", path.display())]
    InvalidProperty {
        /// The key naming the file.
        key: String,
        /// The file.
        path: PathBuf,
        /// The property inside the file (empty for a syntax error).
        property: String,
        /// What is wrong.
        message: String,
    },
    /// A configuration source failed (e.g. a malformed environment variable name).
    #[error("{0}")]
    Source(String),
    /// Several of the above.
    #[error("{} configuration errors:\n  - {}", .0.len(), join_errors(.0))]
    Multiple(Vec<Error>),
}

pub(super) fn show_origin(origin: &Option<String>) -> String {
    origin
        .as_ref()
        .map(|o| format!(" ({o})"))
        .unwrap_or_default()
}

fn show_expected(expected: &[String]) -> String {
    if expected.is_empty() {
        String::new()
    } else {
        format!("; expected one of: {}", expected.join(", "))
    }
}

fn join_errors(errors: &[Error]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n  - ")
}

impl Error {
    /// The configuration key this error is about, if one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Error::UnknownKey { key, .. }
            | Error::InvalidValue { key, .. }
            | Error::ReadFile { key, .. }
            | Error::InvalidProperty { key, .. } => Some(key),
            Error::ReadConfig { .. }
            | Error::Syntax { .. }
            | Error::Source(_)
            | Error::Multiple(_) => None,
        }
    }

    /// This error and, for [`Error::Multiple`], each inner one.
    pub fn iter(&self) -> impl Iterator<Item = &Error> {
        let inner: &[Error] = match self {
            Error::Multiple(errors) => errors,
            other => std::slice::from_ref(other),
        };
        inner.iter()
    }

    pub(super) fn from_many(mut errors: Vec<Error>) -> Result<(), Error> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(Error::Multiple(errors)),
        }
    }

    pub(super) fn invalid(
        key: impl Into<String>,
        origin: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::InvalidValue {
            key: key.into(),
            origin,
            message: message.into(),
        }
    }

    pub(super) fn from_figment(figment: &Figment, err: figment::Error) -> Self {
        let errors: Vec<Error> = err
            .into_iter()
            .map(|e| Self::from_one_figment(figment, e))
            .collect();
        match Self::from_many(errors) {
            Err(e) => e,
            Ok(()) => Error::Source("configuration could not be read".into()),
        }
    }

    fn from_one_figment(figment: &Figment, e: figment::Error) -> Self {
        use figment::error::Kind;
        let mut path = e.path.clone();
        let fallback_origin = e.metadata.as_ref().map(|md| describe_metadata(md, &path));
        match e.kind {
            Kind::UnknownField(name, expected) => {
                if path.last() != Some(&name) {
                    path.push(name);
                }
                let key = path.join(".");
                let origin = origin_of(figment, &path).or(fallback_origin);
                Error::UnknownKey {
                    key,
                    origin,
                    expected: expected.iter().map(|s| (*s).to_owned()).collect(),
                }
            }
            Kind::UnknownVariant(found, expected) => {
                let key = path.join(".");
                let origin = origin_of(figment, &path).or(fallback_origin);
                Error::invalid(
                    key,
                    origin,
                    format!(
                        "unknown value `{found}`; expected one of: {}",
                        expected.join(", ")
                    ),
                )
            }
            kind if path.is_empty() => {
                let message = sanitize_message(&kind.to_string());
                match fallback_origin {
                    Some(o) => Error::Source(format!("{message} ({o})")),
                    None => Error::Source(message),
                }
            }
            kind => {
                let key = path.join(".");
                let origin = origin_of(figment, &path).or(fallback_origin);
                let message = if path.iter().any(|p| is_secret_key(p)) {
                    match kind {
                        Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) => {
                            format!("expected {expected} (value not shown)")
                        }
                        _ => "not acceptable (value not shown)".to_owned(),
                    }
                } else {
                    sanitize_message(&kind.to_string())
                };
                Error::invalid(key, origin, message)
            }
        }
    }
}

/// Drops the source-snippet lines a TOML parser adds (they could show a secret).
pub(super) fn sanitize_message(message: &str) -> String {
    let kept: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| {
            let digits = l
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            !digits.starts_with('|')
        })
        .collect();
    kept.join(": ")
}

fn describe_metadata(md: &Metadata, path: &[impl AsRef<str>]) -> String {
    match &md.source {
        Some(Source::File(p)) => format!("in config file `{}`", p.display()),
        _ if md.name == env::ENV_SOURCE_NAME => {
            format!("from env {}", md.interpolate(&Profile::Default, path))
        }
        _ if md.name == overrides::FLAG_SOURCE_NAME => {
            format!("from flag {}", md.interpolate(&Profile::Default, path))
        }
        Some(other) => format!("in {} {other}", md.name),
        None => format!("in {}", md.name),
    }
}

/// Where the value at `path` came from, according to figment's tags.
pub(super) fn origin_of(figment: &Figment, path: &[impl AsRef<str>]) -> Option<String> {
    // Walk segment by segment: a segment may itself contain dots (a librdkafka property name).
    let (first, rest) = path.split_first()?;
    let mut value = figment.find_value(first.as_ref()).ok()?;
    for segment in rest {
        value = value.as_dict()?.get(segment.as_ref())?.clone();
    }
    let md = figment.get_metadata(value.tag())?;
    Some(describe_metadata(md, path))
}
