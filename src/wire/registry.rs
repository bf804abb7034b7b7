//! The Schema Registry client: writer schemas by id (cached), and registering our output schema.
//!
//! Backed by `schema_registry_converter`'s async client. Only two endpoints are used,
//! `GET /schemas/ids/{id}` and `POST /subjects/{subject}/versions`, which every
//! Confluent-compatible registry implements (rivven-schema included).
//!
//! Failures are classified for the caller ([`Error::is_transient`]):
//! - transient (retry with backoff; never dead-letter the record): the registry cannot be reached,
//!   times out, answers 5xx/408/429, rejects our credentials (401/403), answers something that is
//!   not a Schema Registry answer (e.g. a 404 without a registry error body: a wrong URL);
//! - permanent for the record (dead-letter it): the registry says the id does not exist
//!   (404 with error code 404xx), or the schema under the id is not Avro or cannot be parsed.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_schema_by_id, post_schema,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{RawError, SchemaType, SuppliedSchema};

use super::schema::WriterSchema;
use super::{Error, Result};

/// How to reach the Schema Registry.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistrySettings {
    /// Base URLs (`https://host:8081`), tried in order; at least one. A trailing `/` is ignored.
    pub urls: Vec<String>,
    /// `(user or API key, password or API secret)`.
    pub basic_auth: Option<(String, String)>,
    /// Timeout of each HTTP request (connect + response).
    pub timeout: Duration,
    /// A PEM file of CA certificates to trust in addition to the system's (self-hosted
    /// registries with a private CA).
    pub ca_location: Option<PathBuf>,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            urls: vec!["http://localhost:8081".into()],
            basic_auth: None,
            timeout: Duration::from_secs(10),
            ca_location: None,
        }
    }
}

impl fmt::Debug for RegistrySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| redact_url(u)).collect();
        f.debug_struct("RegistrySettings")
            .field("urls", &urls)
            .field(
                "basic_auth",
                &self.basic_auth.as_ref().map(|(user, _)| (user, "***")),
            )
            .field("timeout", &self.timeout)
            .field("ca_location", &self.ca_location)
            .finish()
    }
}

/// `https://user:secret@host/` → `https://***@host/`.
fn redact_url(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{}***@{}", &url[..scheme_end + 3], &rest[at + 1..]);
        }
    }
    url.to_string()
}

/// `https://user:secret@host/x` → (`https://host/x`, `Some(("user", "secret"))`), percent-decoded.
fn split_userinfo(url: &str) -> (String, Option<(String, String)>) {
    let Some(scheme_end) = url.find("://") else {
        return (url.to_string(), None);
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return (url.to_string(), None);
    };
    let info = &rest[..at];
    let (user, password) = info.split_once(':').unwrap_or((info, ""));
    let stripped = format!("{}{}", &url[..scheme_end + 3], &rest[at + 1..]);
    (
        stripped,
        Some((percent_decode(user), percent_decode(password))),
    )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How long a "permanent" answer about an id (not found, not Avro) is remembered, so a topic
/// full of records with a bad id does not cost one registry request per record.
const NEGATIVE_TTL: Duration = Duration::from_secs(60);

/// Confluent's "schema not found" family of error codes (40403 for ids).
fn is_not_found_code(code: u32) -> bool {
    (40400..40500).contains(&code)
}

/// A Schema Registry client. Cheap to share (`Arc`); every method takes `&self`.
pub struct Registry {
    settings: SrSettings,
    urls: String,
    secrets: Vec<String>,
    schemas: Mutex<HashMap<u32, Arc<WriterSchema>>>,
    failures: Mutex<HashMap<u32, (Error, Instant)>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("urls", &self.urls)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A client for `settings`. Fails on settings that can never work (no URL, an unreadable
    /// or empty CA file); nothing is sent to the registry yet.
    pub fn new(settings: RegistrySettings) -> Result<Registry> {
        // Credentials inside a URL never reach the HTTP library, whose errors quote the URL:
        // they are stripped here and sent as basic auth (unless basic auth is set explicitly).
        let raw: Vec<&str> = settings
            .urls
            .iter()
            .map(|u| u.trim().trim_end_matches('/'))
            .collect();
        let mut url_auth = None;
        let mut secrets = Vec::new();
        let mut urls = Vec::with_capacity(raw.len());
        for u in &raw {
            let (url, auth) = split_userinfo(u);
            if let Some((_, password)) = &auth {
                // Still redacted from any message, should a library quote the original.
                secrets.push(u.to_string());
                if !password.is_empty() {
                    secrets.push(password.clone());
                }
            }
            if url_auth.is_none() {
                url_auth = auth;
            }
            urls.push(url);
        }
        let basic_auth = settings.basic_auth.clone().or(url_auth);
        let Some(first) = urls.first().filter(|u| !u.is_empty()) else {
            return Err(Error::Config("no schema registry URL".into()));
        };
        let mut builder = SrSettings::new_builder(first.clone());
        for url in &urls[1..] {
            builder.add_url(url.clone());
        }
        if let Some((user, password)) = &basic_auth {
            builder.set_basic_authorization(user, Some(password));
            if !password.is_empty() {
                secrets.push(password.clone());
            }
        }
        builder.set_timeout(settings.timeout);
        let mut client = reqwest::Client::builder();
        if let Some(path) = &settings.ca_location {
            let pem = std::fs::read(path).map_err(|e| {
                Error::Config(format!(
                    "cannot read the registry CA file {}: {e}",
                    path.display()
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::Config(format!(
                    "the registry CA file {} is not PEM: {e}",
                    path.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(Error::Config(format!(
                    "the registry CA file {} holds no certificate",
                    path.display()
                )));
            }
            client = client.tls_certs_merge(certs);
        }
        let sr = builder.build_with(client).map_err(|e| {
            Error::Config(format!(
                "cannot build the schema registry client: {}",
                describe(&e)
            ))
        })?;
        let shown: Vec<String> = urls.iter().map(|u| redact_url(u)).collect();
        Ok(Registry {
            settings: sr,
            urls: shown.join(","),
            secrets,
            schemas: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// The writer schema registered under `id`, fetched once and cached. Permanent failures
    /// (not found, not Avro) are remembered for a minute.
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<WriterSchema>> {
        if let Some(s) = lock(&self.schemas).get(&id) {
            return Ok(s.clone());
        }
        if let Some((err, at)) = lock(&self.failures).get(&id)
            && at.elapsed() < NEGATIVE_TTL
        {
            return Err(err.clone());
        }
        let result = match get_schema_by_id(id, &self.settings).await {
            Ok(registered) => {
                let is_avro = match &registered.schema_type {
                    SchemaType::Avro => true,
                    SchemaType::Other(t) => t.eq_ignore_ascii_case("avro"),
                    _ => false,
                };
                if !is_avro {
                    Err(Error::InvalidSchema {
                        what: format!("schema id {id}"),
                        reason: format!(
                            "it is registered as {:?}, not AVRO",
                            registered.schema_type
                        ),
                    })
                } else if !registered.references.is_empty() {
                    Err(Error::InvalidSchema {
                        what: format!("schema id {id}"),
                        reason: "it uses schema references, which this service does not resolve"
                            .into(),
                    })
                } else {
                    WriterSchema::parse(id, registered.schema)
                        .map(Arc::new)
                        .map_err(|reason| Error::InvalidSchema {
                            what: format!("schema id {id}"),
                            reason,
                        })
                }
            }
            Err(e) => Err(self.classify(Call::SchemaById(id), &e)),
        };
        match result {
            Ok(schema) => {
                lock(&self.schemas).insert(id, schema.clone());
                lock(&self.failures).remove(&id);
                Ok(schema)
            }
            Err(err) => {
                if !err.is_transient() {
                    lock(&self.failures).insert(id, (err.clone(), Instant::now()));
                }
                Err(err)
            }
        }
    }

    /// Registers `schema_text` (Avro) under `subject` and returns its id; registering a schema
    /// that is already there returns the existing id. Uses only
    /// `POST /subjects/{subject}/versions`.
    pub async fn register(&self, subject: &str, schema_text: &str) -> Result<u32> {
        WriterSchema::parse(0, schema_text).map_err(|reason| Error::InvalidSchema {
            what: format!("the schema for subject {subject}"),
            reason,
        })?;
        let supplied = SuppliedSchema::new(None, SchemaType::Avro, schema_text.to_string());
        match post_schema(&self.settings, subject.to_string(), supplied).await {
            Ok(registered) => Ok(registered.id),
            Err(e) => Err(self.classify(Call::Register(subject), &e)),
        }
    }

    fn redact(&self, mut s: String) -> String {
        for secret in &self.secrets {
            if s.contains(secret.as_str()) {
                let shown = if secret.contains("://") {
                    redact_url(secret)
                } else {
                    "***".into()
                };
                s = s.replace(secret.as_str(), &shown);
            }
        }
        s
    }

    fn classify(&self, call: Call<'_>, e: &SRCError) -> Error {
        let detail = self.redact(describe(e));
        classify(call, e, detail)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug, Clone, Copy)]
enum Call<'a> {
    SchemaById(u32),
    Register(&'a str),
}

impl fmt::Display for Call<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::SchemaById(id) => write!(f, "fetching schema id {id}"),
            Call::Register(subject) => write!(f, "registering a schema under {subject}"),
        }
    }
}

/// The library's error as one line: what failed, and why, down to the root cause (a refused
/// connection, a timeout…).
fn describe(e: &SRCError) -> String {
    let mut out = e.error.clone();
    if let Some(cause) = &e.cause {
        out.push_str(": ");
        out.push_str(cause);
    }
    let mut source = std::error::Error::source(e).and_then(std::error::Error::source);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The HTTP status the library reports in its message ("... failed with status 404 Not Found").
fn status_of(e: &SRCError) -> Option<u16> {
    let rest = &e.error[e.error.find("with status ")? + "with status ".len()..];
    rest.get(..3)?.parse().ok()
}

/// The registry's `{"error_code": …, "message": …}` body, when the library kept it.
fn registry_error(e: &SRCError) -> Option<&RawError> {
    std::error::Error::source(e)?.downcast_ref::<RawError>()
}

fn classify(call: Call<'_>, e: &SRCError, detail: String) -> Error {
    let op = call.to_string();
    let Some(status) = status_of(e) else {
        // No HTTP status: the request failed (connect, TLS, timeout), or a 2xx answer was not
        // what a registry sends. Either way the registry, not the record, is at fault.
        return Error::RegistryUnavailable { op, detail };
    };
    let code = registry_error(e).map(|r| r.error_code).unwrap_or(0);
    match (status, call) {
        (404, Call::SchemaById(id)) if is_not_found_code(code) => Error::SchemaNotFound { id },
        (404, _) => Error::RegistryUnavailable {
            op,
            detail: format!(
                "{detail} (a 404 without a registry error code: is the registry URL right?)"
            ),
        },
        (401 | 403, _) => Error::RegistryAuth { op, status },
        (409 | 422, Call::Register(subject)) => Error::RegisterRejected {
            subject: subject.to_string(),
            status,
            detail,
        },
        _ => Error::RegistryUnavailable { op, detail },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http_error(status: &str, code: u32, message: &str) -> SRCError {
        SRCError::non_retryable_with_cause(
            serde_json::from_value::<RawError>(
                serde_json::json!({"error_code": code, "message": message}),
            )
            .unwrap(),
            &format!("HTTP request to schema registry failed with status {status}"),
        )
    }

    #[test]
    fn not_found_is_permanent_only_with_a_registry_error_code() {
        let e = classify(
            Call::SchemaById(7),
            &http_error("404 Not Found", 40403, "Schema not found"),
            "d".into(),
        );
        assert_eq!(e, Error::SchemaNotFound { id: 7 });
        assert!(!e.is_transient());
        assert_eq!(
            e.to_string(),
            "schema id 7 not found in the schema registry"
        );
        // a 404 from something that is not a registry (wrong URL path): not the record's fault
        let e = classify(
            Call::SchemaById(7),
            &http_error("404 Not Found", 0, "html"),
            "d".into(),
        );
        assert!(matches!(e, Error::RegistryUnavailable { .. }), "{e:?}");
        assert!(e.is_transient());
        assert!(e.to_string().contains("is the registry URL right?"));
    }

    #[test]
    fn server_errors_timeouts_and_auth_are_transient() {
        for status in [
            "500 Internal Server Error",
            "502 Bad Gateway",
            "503 Service Unavailable",
            "504 Gateway Timeout",
            "429 Too Many Requests",
            "408 Request Timeout",
        ] {
            let e = classify(
                Call::SchemaById(1),
                &http_error(status, 50001, "boom"),
                "detail".into(),
            );
            assert!(
                matches!(e, Error::RegistryUnavailable { .. }),
                "{status}: {e:?}"
            );
            assert!(e.is_transient());
        }
        let refused = SRCError::retryable_with_cause(
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"),
            "http call to schema registry failed",
        );
        let e = classify(Call::SchemaById(1), &refused, describe(&refused));
        assert!(e.is_transient());
        assert_eq!(
            e.to_string(),
            "schema registry unavailable (fetching schema id 1): http call to schema registry failed: refused"
        );
        // a body that times out or is not registry JSON after a 200
        let garbled =
            SRCError::non_retryable_with_cause("eof", "could not parse to RawRegisteredSchema");
        assert!(classify(Call::SchemaById(1), &garbled, describe(&garbled)).is_transient());
        for status in ["401 Unauthorized", "403 Forbidden"] {
            let e = classify(
                Call::Register("s"),
                &http_error(status, 40101, "no"),
                "d".into(),
            );
            assert!(matches!(e, Error::RegistryAuth { .. }), "{e:?}");
            assert!(e.is_transient());
            assert!(e.to_string().contains("credentials"));
        }
    }

    #[test]
    fn register_conflicts_are_permanent() {
        let e = classify(
            Call::Register("waittimes_avro-value"),
            &http_error("409 Conflict", 409, "incompatible"),
            "HTTP request to schema registry failed with status 409 Conflict: incompatible".into(),
        );
        assert!(
            matches!(e, Error::RegisterRejected { status: 409, .. }),
            "{e:?}"
        );
        assert!(!e.is_transient());
        assert!(e.to_string().contains("waittimes_avro-value"));
    }

    #[test]
    fn secrets_never_show() {
        let settings = RegistrySettings {
            urls: vec![
                "https://key:url-secret@sr.example.com/".into(),
                "http://second:8081".into(),
            ],
            basic_auth: Some(("api-key".into(), "s3cr3t-password".into())),
            timeout: Duration::from_secs(3),
            ca_location: None,
        };
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("s3cr3t-password") && !shown.contains("url-secret"),
            "{shown}"
        );
        assert!(
            shown.contains("api-key") && shown.contains("https://***@sr.example.com/"),
            "{shown}"
        );
        let registry = Registry::new(settings).unwrap();
        let shown = format!("{registry:?}");
        assert!(
            !shown.contains("s3cr3t-password") && !shown.contains("url-secret"),
            "{shown}"
        );
        let leaked = registry.redact(
            "error sending request for url (https://key:url-secret@sr.example.com/schemas/ids/1) with s3cr3t-password"
                .into(),
        );
        assert!(
            !leaked.contains("s3cr3t-password") && !leaked.contains("url-secret"),
            "{leaked}"
        );
    }

    #[test]
    fn requests_are_send_futures() {
        fn assert_send<T: Send>(_: &T) {}
        let registry = Registry::new(RegistrySettings::default()).unwrap();
        assert_send(&registry.schema_by_id(1));
        assert_send(&registry.register("s", "\"int\""));
    }

    #[test]
    fn descriptions_reach_the_root_cause() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("error sending request")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = SRCError::retryable_with_cause(
            Outer(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "operation timed out",
            )),
            "http call to schema registry failed",
        );
        assert_eq!(
            describe(&e),
            "http call to schema registry failed: error sending request: operation timed out"
        );
    }

    #[test]
    fn bad_settings_fail_early() {
        let none = RegistrySettings {
            urls: vec![],
            ..Default::default()
        };
        assert!(matches!(Registry::new(none), Err(Error::Config(_))));
        let missing_ca = RegistrySettings {
            ca_location: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let e = Registry::new(missing_ca).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        assert!(!e.is_transient());
    }

    #[test]
    fn url_credentials_become_basic_auth_and_never_reach_errors() {
        assert_eq!(
            split_userinfo("https://k%40y:p%3Ass%2F@sr.example.com:8443/x"),
            (
                "https://sr.example.com:8443/x".to_string(),
                Some(("k@y".to_string(), "p:ss/".to_string()))
            )
        );
        assert_eq!(
            split_userinfo("http://h:1"),
            ("http://h:1".to_string(), None)
        );
        assert_eq!(split_userinfo("%zz"), ("%zz".to_string(), None));
        // Nothing listens on port 1: the request fails and its error would quote the URL.
        let registry = Registry::new(RegistrySettings {
            urls: vec!["http://api-key:s%40cret-in-url@127.0.0.1:1/".into()],
            timeout: Duration::from_secs(5),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(registry.urls, "http://127.0.0.1:1");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt.block_on(registry.schema_by_id(1)).unwrap_err();
        let shown = format!("{err} {err:?} {registry:?}");
        assert!(err.is_transient(), "{shown}");
        assert!(
            !shown.contains("s%40cret-in-url") && !shown.contains("s@cret-in-url"),
            "{shown}"
        );
        assert!(shown.contains("127.0.0.1:1"), "{shown}");
    }

    #[test]
    fn redact_url_keeps_host_and_path() {
        assert_eq!(redact_url("https://u:p@h:1/x?y"), "https://***@h:1/x?y");
        assert_eq!(redact_url("http://h:8081"), "http://h:8081");
        assert_eq!(redact_url("h"), "h");
    }
}
