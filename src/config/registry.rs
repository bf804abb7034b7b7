//! Schema Registry settings: URL list, basic auth from the config, the workshops'
//! `schema.properties`, or the registry keys in Confluent's `client.properties`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::kafka::KafkaProperties;
use super::secret::Secret;

/// Basic-auth credentials for the Schema Registry.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// The API key / user name.
    pub username: String,
    /// The API secret / password.
    pub password: Secret,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// Effective Schema Registry settings, after merging files and config keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaRegistry {
    /// Base URLs without credentials or a trailing `/`; at least one.
    pub urls: Vec<String>,
    /// Basic auth, if any source set a user name.
    pub basic_auth: Option<BasicAuth>,
    /// HTTP request timeout.
    pub timeout: Duration,
    /// A PEM file of CA certificates trusted (besides the system's) for `https` registry URLs.
    pub ca_location: Option<PathBuf>,
}

/// What a registry properties source says (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RegistryFile {
    pub url: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub ca_location: Option<String>,
    pub warnings: Vec<String>,
}

/// Java-client TLS keys for the registry that librdkafka-style clients cannot use, and what to
/// do instead. Rejected (not ignored): ignoring a trust store would only fail later, as an
/// unexplained certificate error, or worse, trust a different CA than the operator meant.
const UNSUPPORTED_TLS_KEYS: &[(&str, &str)] = &[
    (
        "schema.registry.ssl.truststore.location",
        "Java trust stores (JKS/PKCS12) cannot be read: export the CA certificate as PEM \
         (`keytool -exportcert -rfc -alias <alias> -keystore <truststore>`) and set \
         `schema.registry.ssl.ca.location` (or schema_registry.ssl_ca_location) to that file",
    ),
    (
        "schema.registry.ssl.keystore.location",
        "client certificates for the schema registry (mutual TLS) are not supported; use basic \
         auth",
    ),
    (
        "schema.registry.ssl.certificate.location",
        "client certificates for the schema registry (mutual TLS) are not supported; use basic \
         auth",
    ),
    (
        "schema.registry.ssl.key.location",
        "client certificates for the schema registry (mutual TLS) are not supported; use basic \
         auth",
    ),
];

/// Reads registry settings out of `.properties` keys in any of the spellings the workshops and
/// Confluent use: `schema.registry.url` (or `url`), `schema.registry.username` /
/// `schema.registry.password` (the workshop), `basic.auth.user.info` or
/// `schema.registry.basic.auth.user.info` (`key:secret`) with `basic.auth.credentials.source`
/// `USER_INFO`, `URL` (credentials inside the URL) or `SASL_INHERIT` (the Kafka SASL user).
/// Unrecognized keys are ignored with a warning naming them.
pub(crate) fn read_registry_properties(
    props: &KafkaProperties,
    source: &str,
    kafka: Option<&KafkaProperties>,
    warn_unknown: bool,
) -> Result<RegistryFile, (String, String)> {
    let mut out = RegistryFile::default();
    let get = |names: &[&str]| names.iter().find_map(|n| props.get(n).map(str::to_owned));
    out.url = get(&["schema.registry.url", "url"]);
    // `schema.registry.ssl.ca.location` is the librdkafka-style spelling Confluent's Python and
    // Go clients take from a properties file; `ssl.ca.location` is what their registry client
    // itself calls it (only reachable in a schema.properties: in client.properties that key is
    // the Kafka CA and never comes here).
    out.ca_location = get(&["schema.registry.ssl.ca.location", "ssl.ca.location"])
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    for (key, advice) in UNSUPPORTED_TLS_KEYS {
        if props.contains_key(key) {
            return Err(((*key).to_owned(), (*advice).to_owned()));
        }
    }
    let credentials_source = get(&[
        "basic.auth.credentials.source",
        "schema.registry.basic.auth.credentials.source",
    ])
    .map(|s| s.trim().to_ascii_uppercase());
    let user_info_key = [
        "schema.registry.basic.auth.user.info",
        "basic.auth.user.info",
    ]
    .into_iter()
    .find(|k| props.contains_key(k));
    match credentials_source.as_deref() {
        Some("SASL_INHERIT") => {
            let k = kafka.cloned().unwrap_or_default();
            out.username = k.get("sasl.username").map(str::to_owned);
            out.password = k.get("sasl.password").map(Secret::from);
        }
        Some("URL") => {} // taken from the URL's user info when the URL is resolved
        None | Some("USER_INFO") => {}
        Some(other) => {
            return Err((
                "basic.auth.credentials.source".into(),
                format!("`{other}` is not supported (use USER_INFO, URL or SASL_INHERIT)"),
            ));
        }
    }
    if let Some(key) = user_info_key
        && credentials_source.as_deref() != Some("SASL_INHERIT")
    {
        let info = props.get(key).unwrap_or_default();
        let (user, pass) = info.split_once(':').ok_or_else(|| {
            (
                key.to_owned(),
                "expected `key:secret` (value not shown)".to_owned(),
            )
        })?;
        out.username = Some(user.to_owned());
        out.password = Some(Secret::new(pass));
    }
    if let Some(u) = get(&[
        "schema.registry.username",
        "schema.registry.basic.auth.username",
    ]) {
        out.username = Some(u);
    }
    if let Some(p) = get(&[
        "schema.registry.password",
        "schema.registry.basic.auth.password",
    ]) {
        out.password = Some(Secret::new(p));
    }
    if warn_unknown {
        const KNOWN: &[&str] = &[
            "schema.registry.url",
            "url",
            "schema.registry.ssl.ca.location",
            "ssl.ca.location",
            "basic.auth.credentials.source",
            "schema.registry.basic.auth.credentials.source",
            "basic.auth.user.info",
            "schema.registry.basic.auth.user.info",
            "schema.registry.username",
            "schema.registry.basic.auth.username",
            "schema.registry.password",
            "schema.registry.basic.auth.password",
        ];
        for (k, _) in props.iter() {
            if !KNOWN.contains(&k) {
                out.warnings.push(format!(
                    "ignoring `{k}` from {source}: not a setting this service uses"
                ));
            }
        }
    }
    Ok(out)
}

/// One registry URL, split into the credential-free base and optional user info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedUrl {
    pub base: String,
    pub user: Option<(String, Secret)>,
}

/// Parses one `http(s)://[user:pass@]host[:port][/path]` URL. Error messages never echo the
/// URL (it may hold credentials).
pub(crate) fn parse_url(raw: &str) -> Result<ParsedUrl, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("empty URL".into());
    }
    if raw.chars().any(char::is_whitespace) {
        return Err("URL contains whitespace".into());
    }
    let (scheme, rest) = raw
        .split_once("://")
        .ok_or("URL has no `http://` or `https://` scheme")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!("URL scheme `{scheme}` is not http or https"));
    }
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(auth_end);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or("URL has an unterminated IPv6 address")?;
        match after {
            "" => (h, None),
            p => (
                h,
                Some(
                    p.strip_prefix(':')
                        .ok_or("URL has garbage after the IPv6 address")?,
                ),
            ),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("URL has no host".into());
    }
    if host.contains(['<', '>', '{', '}']) {
        return Err("URL host looks like an unfilled placeholder".into());
    }
    if let Some(p) = port
        && p.parse::<u16>().is_err()
    {
        return Err("URL port is not a number from 0 to 65535".into());
    }
    if path.contains(['?', '#']) {
        return Err("URL must not have a query or fragment".into());
    }
    let user = match userinfo {
        None => None,
        Some(info) => {
            let (u, p) = info.split_once(':').unwrap_or((info, ""));
            Some((percent_decode(u), Secret::new(percent_decode(p))))
        }
    };
    let base = format!("{scheme}://{hostport}{}", path.trim_end_matches('/'));
    Ok(ParsedUrl { base, user })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL list with any `user:password@` replaced by `***@`, for printing.
pub fn redact_urls(list: &str) -> String {
    list.split(',')
        .map(|item| {
            let Some((scheme, rest)) = item.split_once("://") else {
                return item.to_owned();
            };
            let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..auth_end].rfind('@') {
                Some(at) => format!("{scheme}://***{}", &rest[at..]),
                None => item.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Splits a comma-separated URL list, skipping empty items.
pub(crate) fn split_urls(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("https://psrc-1.us-east-2.aws.confluent.cloud/").unwrap();
        assert_eq!(u.base, "https://psrc-1.us-east-2.aws.confluent.cloud");
        assert_eq!(u.user, None);
        let u = parse_url("http://127.0.0.1:8081").unwrap();
        assert_eq!(u.base, "http://127.0.0.1:8081");
        let u = parse_url("HTTP://[::1]:8081/registry/").unwrap();
        assert_eq!(u.base, "http://[::1]:8081/registry");
        let u = parse_url("https://KEY:s%3Acret@sr.example.com").unwrap();
        assert_eq!(u.base, "https://sr.example.com");
        let (user, pass) = u.user.unwrap();
        assert_eq!((user.as_str(), pass.expose()), ("KEY", "s:cret"));
        for bad in [
            "",
            "127.0.0.1:8081",
            "ftp://x",
            "http://",
            "http://host:port",
            "http://<schema registry url>",
            "https://u:hunter2@:99999",
            "http://h/?q",
        ] {
            let err = parse_url(bad).unwrap_err();
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn url_credentials_are_redacted() {
        assert_eq!(
            redact_urls("https://k:s@sr.example.com/x, http://plain:8081"),
            "https://***@sr.example.com/x, http://plain:8081"
        );
        assert_eq!(redact_urls(""), "");
    }

    #[test]
    fn workshop_schema_properties() {
        let props: KafkaProperties = [
            ("schema.registry.url", "https://psrc-1.aws.confluent.cloud"),
            ("schema.registry.username", "SRKEY"),
            ("schema.registry.password", "SRSECRET"),
        ]
        .into_iter()
        .collect();
        let r = read_registry_properties(&props, "f", None, true).unwrap();
        assert_eq!(r.url.as_deref(), Some("https://psrc-1.aws.confluent.cloud"));
        assert_eq!(r.username.as_deref(), Some("SRKEY"));
        assert_eq!(r.password.unwrap().expose(), "SRSECRET");
        assert!(r.warnings.is_empty());
    }

    #[test]
    fn confluent_user_info_and_sasl_inherit() {
        for key in [
            "basic.auth.user.info",
            "schema.registry.basic.auth.user.info",
        ] {
            let props: KafkaProperties = [
                ("schema.registry.url", "https://sr"),
                ("basic.auth.credentials.source", "USER_INFO"),
                (key, "K:S:with-colon"),
            ]
            .into_iter()
            .collect();
            let r = read_registry_properties(&props, "f", None, true).unwrap();
            assert_eq!(r.username.as_deref(), Some("K"));
            assert_eq!(r.password.unwrap().expose(), "S:with-colon");
        }
        let kafka: KafkaProperties = [("sasl.username", "ku"), ("sasl.password", "kp")]
            .into_iter()
            .collect();
        let props: KafkaProperties = [("basic.auth.credentials.source", "SASL_INHERIT")]
            .into_iter()
            .collect();
        let r = read_registry_properties(&props, "f", Some(&kafka), true).unwrap();
        assert_eq!(r.username.as_deref(), Some("ku"));
        assert_eq!(r.password.unwrap().expose(), "kp");
    }

    #[test]
    fn bad_user_info_hides_value() {
        let props: KafkaProperties = [("basic.auth.user.info", "hunter2")].into_iter().collect();
        let (key, msg) = read_registry_properties(&props, "f", None, true).unwrap_err();
        assert_eq!(key, "basic.auth.user.info");
        assert!(!msg.contains("hunter2"));
    }
}
