//! Security against the local stack's Apache Kafka and Schema Registry, everything configured
//! from Confluent property files, and no secret in any log line or error.
//!
//! - Kafka over TLS: the broker's SSL listener, trusting the stack's test CA.
//! - SASL_SSL: PLAIN from a `client.properties` as Confluent Cloud hands it out (the whole
//!   service runs from it) and from Java's `sasl.jaas.config` line; SCRAM-SHA-512 logs in;
//!   SCRAM-SHA-256, which the listener does not offer, fails clearly; a wrong password leaves the
//!   service serving, not ready, and saying "authentication failed".
//! - The registry (rivven-schema, with no TLS or auth of its own) behind an nginx https server
//!   with basic auth, from the workshop's `schema.properties`, with certificates from a CA
//!   generated per test with the `openssl` CLI.
//!
//! `scripts/test` exports where the broker's secured listeners, its CA and its SASL user are
//! (`WAITTIMES_TEST_SSL_BOOTSTRAP`, `WAITTIMES_TEST_SASL_SSL_BOOTSTRAP`, `WAITTIMES_TEST_KAFKA_CA`,
//! `WAITTIMES_TEST_SASL_USERNAME`, `WAITTIMES_TEST_SASL_PASSWORD`).

use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;
use tokio::sync::oneshot;
use waittimes::config::{Config, EnvVars};
use waittimes::domain::{InputKind, OrderEvent};
use waittimes::wire::{
    self, PizzaOrder, PizzaOrderCompleted, Registry, RegistrySettings, UpstreamRecord,
};

use crate::broker::free_port;
use crate::common::{self, TIMEOUT};

// ---- the stack's secured listeners ------------------------------------------------------------------

/// Where the stack's broker takes TLS and SASL_SSL connections, the CA its certificate chains to,
/// and its one SASL user (PLAIN and SCRAM-SHA-512). Defaults match `scripts/test`'s stack.
struct SecureKafka {
    ssl: String,
    sasl_ssl: String,
    ca: PathBuf,
    user: String,
    password: String,
}

impl SecureKafka {
    /// The stack's settings; fails at once, with directions, when the stack is not there.
    fn from_env() -> SecureKafka {
        common::require_stack();
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
        let kafka = SecureKafka {
            ssl: var("WAITTIMES_TEST_SSL_BOOTSTRAP", "127.0.0.1:19095"),
            sasl_ssl: var("WAITTIMES_TEST_SASL_SSL_BOOTSTRAP", "127.0.0.1:19094"),
            ca: PathBuf::from(var(
                "WAITTIMES_TEST_KAFKA_CA",
                concat!(env!("CARGO_MANIFEST_DIR"), "/.stack/test/pki/ca.pem"),
            )),
            user: var("WAITTIMES_TEST_SASL_USERNAME", "waittimes"),
            password: var("WAITTIMES_TEST_SASL_PASSWORD", "waittimes-local-secret"),
        };
        assert!(
            kafka.ca.is_file(),
            "no test CA at {} (WAITTIMES_TEST_KAFKA_CA): `scripts/stack up` makes it, \
             or run everything with `scripts/test`",
            kafka.ca.display()
        );
        for (env, addr) in [
            ("WAITTIMES_TEST_SSL_BOOTSTRAP", &kafka.ssl),
            ("WAITTIMES_TEST_SASL_SSL_BOOTSTRAP", &kafka.sasl_ssl),
        ] {
            let reachable = addr
                .to_socket_addrs()
                .unwrap_or_else(|e| panic!("{env}={addr}: not a host:port ({e})"))
                .any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
            assert!(reachable, "no broker listener at {addr} ({env})");
        }
        kafka
    }
}

// ---- a scratch directory, certificates, nginx ---------------------------------------------------

/// A temporary directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(common::unique("waittimes-security"));
        std::fs::create_dir_all(&dir).expect("create a scratch directory");
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(dir: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the openssl CLI (Debian package `openssl`)");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write to openssl");
    }
    let out = child.wait_with_output().expect("openssl output");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A private CA and a server certificate for 127.0.0.1 / localhost signed by it.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn generate(dir: &Scratch) -> Pki {
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        let mut args = vec!["req", "-x509", "-nodes", "-days", "2"];
        args.extend(ec);
        args.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=waittimes test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&dir.0, &args, None);
        let mut args = vec!["req", "-nodes"];
        args.extend(ec);
        args.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(&dir.0, &args, None);
        dir.write(
            "server.ext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        );
        openssl(
            &dir.0,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
            None,
        );
        Pki {
            ca: dir.path("ca.pem"),
            cert: dir.path("server.pem"),
            key: dir.path("server.key"),
        }
    }
}

/// nginx in the foreground as the current user (`master_process off`), config, pid and logs in
/// the scratch directory: an https server with basic auth in front of the registry, as a cloud
/// registry is. Killed on drop.
struct Nginx {
    child: Child,
    error_log: PathBuf,
}

fn nginx_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("WAITTIMES_NGINX_BIN") {
        return PathBuf::from(bin);
    }
    let sbin = PathBuf::from("/usr/sbin/nginx");
    if sbin.exists() {
        return sbin;
    }
    PathBuf::from("nginx")
}

impl Nginx {
    /// Serves https on 127.0.0.1:`port` with `pki`'s certificate, lets `user` / `password` in
    /// and proxies to the registry at `upstream` (`host:port`).
    fn start(
        dir: &Scratch,
        pki: &Pki,
        port: u16,
        upstream: &str,
        user: &str,
        password: &str,
    ) -> Nginx {
        let d = dir.0.display();
        let hash = openssl(&dir.0, &["passwd", "-apr1", "-stdin"], Some(password));
        dir.write("htpasswd", &format!("{user}:{}\n", hash.trim()));
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n access_log {d}/access.log;\n client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
             server {{\n listen 127.0.0.1:{port} ssl;\n\
             ssl_certificate {};\n ssl_certificate_key {};\n ssl_protocols TLSv1.2 TLSv1.3;\n\
             auth_basic \"schema registry\";\n auth_basic_user_file {d}/htpasswd;\n\
             location / {{\n proxy_pass http://{upstream};\n\
             proxy_set_header Authorization \"\";\n }}\n }}\n}}\n",
            pki.cert.display(),
            pki.key.display()
        );
        let conf_path = dir.write("nginx.conf", &conf);
        let error_log = dir.path("error.log");
        let out = std::fs::File::create(dir.path("nginx.out")).expect("nginx output file");
        let bin = nginx_bin();
        let mut child = Command::new(&bin)
            .arg("-p")
            .arg(&dir.0)
            .arg("-e")
            .arg(&error_log)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {} ({e}): install Debian's `nginx` (scripts/test does), or set \
                     WAITTIMES_NGINX_BIN",
                    bin.display()
                )
            });
        let deadline = Instant::now() + TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let out = std::fs::read_to_string(dir.path("nginx.out")).unwrap_or_default();
                let log = std::fs::read_to_string(&error_log).unwrap_or_default();
                panic!("nginx exited at start ({status}):\n{out}\n{log}\nconfig:\n{conf}");
            }
            assert!(Instant::now() < deadline, "nginx did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx { child, error_log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.error_log).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- Kafka clients built from the service's configuration ---------------------------------------

/// Remembers every error librdkafka reports, to check what an operator would read.
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<String>>>);

impl Errors {
    fn all(&self) -> Vec<String> {
        self.0.lock().expect("errors lock").clone()
    }
}

impl ClientContext for Errors {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0
            .lock()
            .expect("errors lock")
            .push(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for Errors {}

/// Loads a config like the service does: a TOML file naming the property files.
fn load_config(dir: &Scratch, toml: &str) -> Config {
    let path = dir.write("waittimes.toml", toml);
    Config::load_with_env(
        Some(&path),
        EnvVars::from_vars(Vec::<(String, String)>::new()),
    )
    .unwrap_or_else(|e| panic!("config: {e}"))
}

/// Creates `topic` through `config`'s admin settings and waits until it has its partitions.
async fn create_topic(config: &Config, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        config.admin_config().create().expect("admin client");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &options,
        )
        .await
        .unwrap_or_else(|e| panic!("CreateTopics {topic}: {e}"));
    for r in results {
        r.unwrap_or_else(|(name, code)| panic!("creating topic {name}: {code}"));
    }
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let seen = admin
            .inner()
            .fetch_metadata(Some(topic), Timeout::After(Duration::from_secs(5)))
            .ok()
            .and_then(|m| {
                m.topics()
                    .iter()
                    .find(|t| t.name() == topic && t.error().is_none())
                    .map(|t| t.partitions().len())
            });
        if seen == Some(partitions as usize) {
            return;
        }
        assert!(Instant::now() < deadline, "topic {topic} never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Produces three records with `config.producer_config()` and reads them back with
/// `config.consumer_config()` in a consumer group, then commits: the client path the service
/// uses, so it shows the login works for every request kind the service makes.
async fn round_trip(config: &Config, label: &str) {
    let topic = common::unique(&format!("secure-{label}"));
    create_topic(config, &topic, 1).await;
    let producer: FutureProducer = config
        .producer_config()
        .set("message.timeout.ms", "15000")
        .create()
        .expect("producer");
    let sent: Vec<String> = (0..3).map(|i| format!("{label}-{i}")).collect();
    for value in &sent {
        producer
            .send(
                FutureRecord::to(&topic).key("k").payload(value.as_str()),
                Duration::from_secs(15),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("{label}: produce: {e}"));
    }
    let consumer: StreamConsumer = config
        .consumer_config()
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let got: Vec<String> = common::recv_n(&consumer, 3)
        .await
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload().expect("a value")).into_owned())
        .collect();
    assert_eq!(got, sent, "{label}");
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(&topic, 0, Offset::Offset(3))
        .expect("offset");
    consumer
        .commit(&offsets, rdkafka::consumer::CommitMode::Sync)
        .unwrap_or_else(|e| panic!("{label}: commit: {e}"));
}

/// A Confluent-style `client.properties` for the SSL listener (no SASL), with the stack's CA and
/// a Java-only key.
fn ssl_client_properties(kafka: &SecureKafka) -> String {
    format!(
        "# Required connection configs for Kafka producer, consumer, and admin\n\
         bootstrap.servers={}\n\
         security.protocol=SSL\n\
         ssl.ca.location={}\n\
         ssl.endpoint.identification.algorithm=https\n\
         # Java-only: dropped with a warning\n\
         key.serializer=org.apache.kafka.common.serialization.StringSerializer\n\
         session.timeout.ms=6000\n\
         acks=all\n",
        kafka.ssl,
        kafka.ca.display()
    )
}

/// `client.properties` exactly as Confluent Cloud hands it out to librdkafka-based clients (API
/// key and secret as PLAIN credentials); only the bootstrap address is local, plus the CA line,
/// since Confluent Cloud's certificates chain to a CA every system trusts.
fn confluent_cloud_client_properties(kafka: &SecureKafka, password: &str) -> String {
    format!(
        "# Required connection configs for Kafka producer, consumer, and admin\n\
         bootstrap.servers={}\n\
         security.protocol=SASL_SSL\n\
         sasl.mechanisms=PLAIN\n\
         sasl.username={}\n\
         sasl.password={password}\n\
         ssl.ca.location={}\n\
         \n\
         # Best practice for higher availability in librdkafka clients prior to 1.7\n\
         session.timeout.ms=45000\n",
        kafka.sasl_ssl,
        kafka.user,
        kafka.ca.display()
    )
}

/// A SASL_SSL `client.properties` with librdkafka's own SASL keys.
fn sasl_client_properties(kafka: &SecureKafka, mechanism: &str, password: &str) -> String {
    format!(
        "bootstrap.servers={}\nsecurity.protocol=SASL_SSL\nsasl.mechanisms={mechanism}\n\
         sasl.username={}\nsasl.password={password}\nssl.ca.location={}\n",
        kafka.sasl_ssl,
        kafka.user,
        kafka.ca.display()
    )
}

/// A SASL_SSL `client.properties` in the Java client's form: `sasl.mechanism` and a JAAS line.
fn jaas_client_properties(kafka: &SecureKafka, mechanism: &str, password: &str) -> String {
    let module = if mechanism == "PLAIN" {
        "org.apache.kafka.common.security.plain.PlainLoginModule"
    } else {
        "org.apache.kafka.common.security.scram.ScramLoginModule"
    };
    format!(
        "bootstrap.servers={}\n\
         security.protocol=SASL_SSL\n\
         sasl.mechanism={mechanism}\n\
         sasl.jaas.config={module} required username='{}' password='{password}';\n\
         ssl.ca.location={}\n",
        kafka.sasl_ssl,
        kafka.user,
        kafka.ca.display()
    )
}

fn kafka_toml(group: &str) -> String {
    format!("[kafka]\nclient_properties = \"client.properties\"\ngroup_id = \"{group}\"\n")
}

/// Asks for metadata with `config` and returns the outcome with every error librdkafka reported
/// meanwhile. The errors wait on the client's queue until it is polled, so it is polled after.
async fn connection_errors(mut config: ClientConfig) -> (Result<(), KafkaError>, Vec<String>) {
    config.set("group.id", common::unique("probe"));
    let errors = Errors::default();
    let consumer: BaseConsumer<Errors> = config
        .create_with_context(errors.clone())
        .expect("consumer");
    tokio::task::spawn_blocking(move || {
        let result = consumer
            .fetch_metadata(None, Duration::from_secs(8))
            .map(|_| ());
        for _ in 0..10 {
            let _ = consumer.poll(Duration::from_millis(50));
        }
        (result, errors.all())
    })
    .await
    .expect("metadata task")
}

fn assert_no_secret(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "secret {s:?} appears in:\n{text}");
    }
}

// ---- Kafka tests -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_over_tls_from_a_client_properties_file() {
    let kafka = SecureKafka::from_env();
    let dir = Scratch::new();
    dir.write("client.properties", &ssl_client_properties(&kafka));
    let config = load_config(&dir, &kafka_toml(&common::unique("tls")));
    let props = config.kafka_properties();
    assert_eq!(props.get("security.protocol"), Some("SSL"));
    assert_eq!(
        props.get("ssl.ca.location"),
        Some(kafka.ca.display().to_string().as_str())
    );
    assert!(props.get("key.serializer").is_none());
    assert!(
        config
            .warnings()
            .iter()
            .any(|w| w.contains("key.serializer")),
        "{:?}",
        config.warnings()
    );
    round_trip(&config, "tls").await;

    // The TLS is real: without the stack's CA the broker's certificate is refused...
    let mut untrusted = config.consumer_config();
    untrusted.remove("ssl.ca.location");
    let (result, errors) = connection_errors(untrusted).await;
    assert!(result.is_err(), "connected without trusting the CA");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("certificate verify failed")),
        "{errors:#?}"
    );
    // ...and plaintext to the TLS port gets nowhere.
    let mut plaintext = config.consumer_config();
    plaintext.set("security.protocol", "PLAINTEXT");
    let (result, _) = connection_errors(plaintext).await;
    assert!(result.is_err(), "PLAINTEXT got through the TLS port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_plain_logs_in_from_a_java_jaas_line_and_a_wrong_password_fails_clearly() {
    let kafka = SecureKafka::from_env();
    let dir = Scratch::new();
    dir.write(
        "client.properties",
        &jaas_client_properties(&kafka, "PLAIN", &kafka.password),
    );
    let config = load_config(&dir, &kafka_toml(&common::unique("jaas")));
    let props = config.kafka_properties();
    assert_eq!(props.get("sasl.mechanisms"), Some("PLAIN"));
    assert_eq!(props.get("sasl.username"), Some(kafka.user.as_str()));
    assert_eq!(props.get("sasl.password"), Some(kafka.password.as_str()));
    assert!(props.get("sasl.jaas.config").is_none());
    round_trip(&config, "jaas-plain").await;

    let wrong = "waittimes-WRONG-jaas-secret";
    dir.write(
        "client.properties",
        &jaas_client_properties(&kafka, "PLAIN", wrong),
    );
    let config = load_config(&dir, &kafka_toml(&common::unique("jaas-wrong")));
    let (result, errors) = connection_errors(config.consumer_config()).await;
    assert!(result.is_err(), "a wrong password connected");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("SASL authentication error")
                && e.contains("Invalid username or password")),
        "{errors:#?}"
    );
    for text in errors
        .iter()
        .cloned()
        .chain([config.redacted_summary(), format!("{config:?}")])
    {
        assert_no_secret(&text, &[wrong]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_512_logs_in_and_scram_sha_256_fails_clearly() {
    let kafka = SecureKafka::from_env();
    let dir = Scratch::new();
    dir.write(
        "client.properties",
        &sasl_client_properties(&kafka, "SCRAM-SHA-512", &kafka.password),
    );
    let config = load_config(&dir, &kafka_toml(&common::unique("scram512")));
    assert_eq!(
        config.kafka_properties().get("sasl.mechanisms"),
        Some("SCRAM-SHA-512")
    );
    round_trip(&config, "scram512").await;

    // The listener offers PLAIN and SCRAM-SHA-512 only, and the user has no SCRAM-SHA-256
    // credential: the broker turns the mechanism down at the handshake, and says which it has.
    dir.write(
        "client.properties",
        &sasl_client_properties(&kafka, "SCRAM-SHA-256", &kafka.password),
    );
    let config = load_config(&dir, &kafka_toml(&common::unique("scram256")));
    let (result, errors) = connection_errors(config.consumer_config()).await;
    assert!(result.is_err(), "SCRAM-SHA-256 connected");
    assert!(
        errors.iter().any(
            |e| e.contains("SASL SCRAM-SHA-256 mechanism handshake failed")
                && e.contains("Unsupported SASL mechanism")
        ),
        "{errors:#?}"
    );
    // TLS was negotiated before SASL: the failure is not a certificate problem.
    assert!(
        !errors
            .iter()
            .any(|e| e.contains("certificate verify failed")),
        "{errors:#?}"
    );
    for e in &errors {
        assert_no_secret(e, &[&kafka.password]);
    }
}
// ---- the registry over https with basic auth --------------------------------------------------------

/// The local stack's rivven-schema behind nginx: https with a per-test CA, basic auth.
struct SecureRegistry {
    dir: Scratch,
    pki: Pki,
    nginx: Nginx,
    port: u16,
}

impl SecureRegistry {
    fn start(user: &str, password: &str) -> SecureRegistry {
        common::require_stack();
        let dir = Scratch::new();
        let pki = Pki::generate(&dir);
        let port = free_port();
        let upstream = common::schema_registry_url()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let nginx = Nginx::start(&dir, &pki, port, &upstream, user, password);
        SecureRegistry {
            dir,
            pki,
            nginx,
            port,
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn settings(&self, user: &str, password: &str) -> RegistrySettings {
        RegistrySettings {
            urls: vec![self.url()],
            basic_auth: Some((user.to_owned(), password.to_owned())),
            timeout: Duration::from_secs(10),
            ca_location: Some(self.pki.ca.clone()),
        }
    }
}

/// The workshop's `schema.properties`, Confluent's USER_INFO form, with the private CA.
fn schema_properties(sr: &SecureRegistry, user: &str, password: &str) -> String {
    format!(
        "schema.registry.url={}\nbasic.auth.credentials.source=USER_INFO\n\
         basic.auth.user.info={user}:{password}\nschema.registry.ssl.ca.location={}\n",
        sr.url(),
        sr.pki.ca.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_over_https_with_basic_auth_from_schema_properties() {
    let sr = SecureRegistry::start("sr-key", "sr-secret-ok");
    sr.dir.write(
        "schema.properties",
        &schema_properties(&sr, "sr-key", "sr-secret-ok"),
    );
    let config = load_config(
        &sr.dir,
        "[schema_registry]\nproperties_file = \"schema.properties\"\n",
    );
    let effective = config.schema_registry();
    assert_eq!(effective.urls, vec![sr.url()]);
    assert_eq!(effective.ca_location.as_deref(), Some(sr.pki.ca.as_path()));
    let auth = effective.basic_auth.clone().expect("basic auth");
    let registry = Registry::new(RegistrySettings {
        urls: effective.urls.clone(),
        basic_auth: Some((auth.username, auth.password.expose().to_owned())),
        timeout: effective.timeout,
        ca_location: effective.ca_location.clone(),
    })
    .expect("registry client");
    let subject = common::unique("secure-orders-value");
    let id = registry
        .register(&subject, PizzaOrder::SCHEMA)
        .await
        .unwrap_or_else(|e| panic!("register over https: {e}"));
    let schema = registry
        .schema_by_id(id)
        .await
        .unwrap_or_else(|e| panic!("fetch over https: {e}"));
    // It decodes a framed record with the schema it fetched.
    let order = PizzaOrder {
        store_id: 9,
        store_order_id: 77,
        coupon_code: 1500,
        date: 18500,
        status: "accepted",
        order_lines: &[],
    };
    let mut framed = Vec::new();
    order.write_framed(id, &mut framed);
    let mut decoders = wire::Decoders::new();
    decoders.learn(id, &schema);
    let decoded = decoders
        .decode(InputKind::Orders, &framed)
        .unwrap_or_else(|e| panic!("decode: {e}"));
    match decoded {
        OrderEvent::Placed(placed) => {
            assert_eq!((placed.store_id, placed.store_order_id), (9, 77));
        }
        other => panic!("decoded {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_wrong_password_or_untrusted_ca_are_clear_errors_without_secrets() {
    let sr = SecureRegistry::start("sr-key", "sr-secret-right");
    let wrong = Registry::new(sr.settings("sr-key", "sr-secret-WRONG")).expect("client");
    let err = wrong.schema_by_id(1).await.expect_err("a wrong password");
    let shown = format!("{err} {err:?}");
    assert!(
        matches!(err, wire::Error::RegistryAuth { status: 401, .. }),
        "{shown}"
    );
    assert!(
        err.is_transient(),
        "auth errors must not dead-letter records"
    );
    assert!(shown.contains("credentials"), "{shown}");
    for secret in ["sr-secret-WRONG", "sr-secret-right"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    let err = wrong
        .register(&common::unique("s-value"), PizzaOrder::SCHEMA)
        .await
        .expect_err("a wrong password");
    assert!(
        matches!(err, wire::Error::RegistryAuth { status: 401, .. }),
        "{err:?}"
    );
    // Credentials inside the URL (Confluent's basic.auth.credentials.source=URL) are stripped
    // from the URL, sent as basic auth and never shown.
    let in_url = format!("https://sr-key:sr-secret-WRONG@127.0.0.1:{}", sr.port);
    sr.dir.write(
        "schema.properties",
        &format!(
            "schema.registry.url={in_url}\nbasic.auth.credentials.source=URL\n\
             schema.registry.ssl.ca.location={}\n",
            sr.pki.ca.display()
        ),
    );
    let config = load_config(
        &sr.dir,
        "[schema_registry]\nproperties_file = \"schema.properties\"\n",
    );
    let effective = config.schema_registry();
    assert_eq!(effective.urls, vec![sr.url()]);
    let auth = effective.basic_auth.expect("basic auth from the URL");
    let client = Registry::new(RegistrySettings {
        urls: vec![in_url.clone()],
        basic_auth: Some((auth.username, auth.password.expose().to_owned())),
        timeout: Duration::from_secs(10),
        ca_location: Some(sr.pki.ca.clone()),
    })
    .expect("client");
    let err = client.schema_by_id(1).await.expect_err("a wrong password");
    let shown = format!(
        "{err} {err:?} {client:?} {config:?} {}",
        config.redacted_summary()
    );
    assert!(!shown.contains("sr-secret-WRONG"), "{shown}");
    // Right credentials inside the URL, and no other basic auth: they authenticate.
    let from_url = Registry::new(RegistrySettings {
        urls: vec![format!(
            "https://sr-key:sr-secret-right@127.0.0.1:{}",
            sr.port
        )],
        basic_auth: None,
        timeout: Duration::from_secs(10),
        ca_location: Some(sr.pki.ca.clone()),
    })
    .expect("client");
    from_url
        .register(&common::unique("url-auth-value"), PizzaOrder::SCHEMA)
        .await
        .unwrap_or_else(|e| panic!("credentials from the URL: {e}"));
    assert!(!format!("{from_url:?}").contains("sr-secret-right"));
    // Without the private CA the registry's certificate is refused, as unavailable (retried).
    let mut untrusted = sr.settings("sr-key", "sr-secret-right");
    untrusted.ca_location = None;
    let err = Registry::new(untrusted)
        .expect("client")
        .schema_by_id(1)
        .await
        .expect_err("an untrusted certificate");
    let shown = format!("{err} {err:?}");
    assert!(
        matches!(err, wire::Error::RegistryUnavailable { .. }),
        "{shown}"
    );
    assert!(shown.to_lowercase().contains("certificate"), "{shown}");
    assert!(!shown.contains("sr-secret-right"), "{shown}");
}

// ---- the whole service, secured -------------------------------------------------------------------
// ---- the whole service, secured -------------------------------------------------------------------

use crate::common::now_ms;

/// Topic names and the `[topics]` table that points the service at them.
struct Topics {
    orders: String,
    completed: String,
    cancelled: String,
    wait_times: String,
    features: String,
    dead_letter: String,
    answers: String,
}

impl Topics {
    fn new() -> Topics {
        Topics {
            orders: common::unique("pizza_orders_avro"),
            completed: common::unique("pizza_orders_completed_avro"),
            cancelled: common::unique("pizza_orders_cancelled_avro"),
            wait_times: common::unique("waittimes_avro"),
            features: common::unique("waittimes_features"),
            dead_letter: common::unique("waittimes_dlq"),
            answers: common::unique("waittimes_answers"),
        }
    }

    fn toml(&self) -> String {
        format!(
            "[topics]\norders = \"{}\"\ncompleted = \"{}\"\ncancelled = \"{}\"\n\
             wait_times = \"{}\"\nfeatures = \"{}\"\ndead_letter = \"{}\"\nanswers = \"{}\"\n",
            self.orders,
            self.completed,
            self.cancelled,
            self.wait_times,
            self.features,
            self.dead_letter,
            self.answers
        )
    }

    async fn create(&self, config: &Config) {
        for t in [
            &self.orders,
            &self.completed,
            &self.cancelled,
            &self.wait_times,
            &self.features,
            &self.dead_letter,
        ] {
            create_topic(config, t, 1).await;
        }
    }
}

/// The service's TOML for a secured run: Kafka from client.properties, the registry from
/// schema.properties, a short emit interval for the test.
fn service_toml(topics: &Topics, group: &str, listen: &str) -> String {
    format!(
        "[kafka]\nclient_properties = \"client.properties\"\ngroup_id = \"{group}\"\n\
         [schema_registry]\nproperties_file = \"schema.properties\"\n\
         [output]\nemit_interval = \"200ms\"\n[http]\nlisten = \"{listen}\"\n{}",
        topics.toml()
    )
}

async fn get_json(client: &reqwest::Client, url: &str) -> Option<(u16, Value)> {
    let response = client
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    let body = response.text().await.ok()?;
    Some((status, serde_json::from_str(&body).ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_runs_over_tls_to_kafka_and_an_https_registry_with_basic_auth() {
    let kafka = SecureKafka::from_env();
    let dir = Scratch::new();
    dir.write("client.properties", &ssl_client_properties(&kafka));
    service_gives_a_live_wait_time(&dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_runs_from_confluent_cloud_client_properties_over_sasl_ssl_plain() {
    let kafka = SecureKafka::from_env();
    let dir = Scratch::new();
    dir.write(
        "client.properties",
        &confluent_cloud_client_properties(&kafka, &kafka.password),
    );
    let config = load_config(&dir, &kafka_toml(&common::unique("ccloud")));
    let props = config.kafka_properties();
    assert_eq!(
        props.get("bootstrap.servers"),
        Some(kafka.sasl_ssl.as_str())
    );
    assert_eq!(props.get("security.protocol"), Some("SASL_SSL"));
    assert_eq!(props.get("sasl.mechanisms"), Some("PLAIN"));
    assert_eq!(props.get("sasl.username"), Some(kafka.user.as_str()));
    assert_eq!(props.get("sasl.password"), Some(kafka.password.as_str()));
    assert_eq!(props.get("session.timeout.ms"), Some("45000"));
    // Every key of Confluent's file is one librdkafka knows: nothing dropped, nothing to warn of.
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    assert_no_secret(
        &format!("{} {config:?}", config.redacted_summary()),
        &[&kafka.password],
    );
    service_gives_a_live_wait_time(&dir).await;
}

/// Runs the service in-process from `dir`'s client.properties (written by the caller) and a
/// schema.properties for a secured registry (written here): one order and its completion 12
/// minutes later, produced through the same Kafka settings, give a live 12 over HTTP, and the
/// service becomes ready.
async fn service_gives_a_live_wait_time(dir: &Scratch) {
    let sr = SecureRegistry::start("sr-svc", "sr-svc-secret");
    let diagnostics = || format!("registry's nginx:\n{}", sr.nginx.log());
    dir.write(
        "schema.properties",
        &schema_properties(&sr, "sr-svc", "sr-svc-secret"),
    );
    let topics = Topics::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let config = load_config(
        dir,
        &service_toml(&topics, &common::unique("svc"), "127.0.0.1:0"),
    );
    topics.create(&config).await;

    // Upstream records, registered through the secured registry and produced with the same
    // Kafka settings.
    let registry = Registry::new(sr.settings("sr-svc", "sr-svc-secret")).expect("registry");
    let orders_id = registry
        .register(&format!("{}-value", topics.orders), PizzaOrder::SCHEMA)
        .await
        .expect("register orders");
    let completed_id = registry
        .register(
            &format!("{}-value", topics.completed),
            PizzaOrderCompleted::SCHEMA,
        )
        .await
        .expect("register completed");
    let producer: FutureProducer = config.producer_config().create().expect("producer");
    let placed = now_ms() - 20 * 60_000;
    let mut buf = Vec::new();
    PizzaOrder {
        store_id: 5,
        store_order_id: 501,
        coupon_code: 1500,
        date: 18500,
        status: "accepted",
        order_lines: &[],
    }
    .write_framed(orders_id, &mut buf);
    producer
        .send(
            FutureRecord::to(&topics.orders)
                .key("5")
                .payload(&buf)
                .timestamp(placed),
            Duration::from_secs(15),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    buf.clear();
    PizzaOrderCompleted {
        store_id: 5,
        store_order_id: 501,
        date: 18500,
        status: "completed",
        rack_time_secs: 100,
        order_delivery_time_secs: 600,
    }
    .write_framed(completed_id, &mut buf);
    producer
        .send(
            FutureRecord::to(&topics.completed)
                .key("5")
                .payload(&buf)
                .timestamp(placed + 12 * 60_000),
            Duration::from_secs(15),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("produce: {e}"));

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(waittimes::service::run_with_listener(
        config,
        listener,
        async {
            let _ = stop_rx.await;
        },
    ));
    let client = reqwest::Client::new();
    let deadline = Instant::now() + TIMEOUT * 2;
    let answer = loop {
        if let Some((200, body)) = get_json(&client, &format!("{base}/stores/5/wait")).await
            && body["basis"] == "live"
        {
            break body;
        }
        if Instant::now() > deadline {
            let ready = get_json(&client, &format!("{base}/health/ready")).await;
            panic!(
                "no live answer for store 5; ready: {ready:?}\n{}",
                diagnostics()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(answer["wait_time_minutes"], 12, "{answer}");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let ready = get_json(&client, &format!("{base}/health/ready")).await;
        if matches!(ready, Some((200, _))) {
            break;
        }
        if Instant::now() > deadline {
            let _ = stop_tx.send(());
            panic!("never ready: {ready:?}\n{}", diagnostics());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the service stops")
        .expect("no panic")
        .expect("a clean stop");
}

// ---- logs never show a secret ------------------------------------------------------------------------

/// The real binary, its stdout and stderr in one file.
struct Binary {
    child: Child,
    output: PathBuf,
}

impl Binary {
    fn start(dir: &Scratch, config: &Path, name: &str, format: &str) -> Binary {
        let output = dir.path(&format!("{name}.log"));
        let file = std::fs::File::create(&output).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_waittimes"))
            .args(["run", "--config"])
            .arg(config)
            // Everything the service itself says, at the most talkative level.
            .env("WAITTIMES__LOG__LEVEL", "debug")
            .env("WAITTIMES__LOG__FORMAT", format)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone"))
            .stderr(file)
            .spawn()
            .expect("start the waittimes binary");
        Binary { child, output }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// Waits until the process exits or `max` passes; returns the output so far.
    async fn settle(&mut self, max: Duration) -> String {
        let deadline = Instant::now() + max;
        while Instant::now() < deadline && !matches!(self.child.try_wait(), Ok(Some(_))) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.output()
    }

    /// Waits until the output satisfies `done` (or the process exits); returns the output.
    async fn wait_for(&mut self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT * 2;
        loop {
            let out = self.output();
            if done(&out) {
                return out;
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                let out = self.output();
                assert!(done(&out), "exited before {what}:\n{out}");
                return out;
            }
            assert!(Instant::now() < deadline, "no {what} in time:\n{out}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 with padding: how a basic-auth header carries `user:password`.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_401_or_a_wrong_kafka_password_leave_it_not_ready_saying_why_without_secrets() {
    let kafka = SecureKafka::from_env();
    let dir = Scratch::new();
    let sr = SecureRegistry::start("sr-log", "sr-log-secret");
    let topics = Topics::new();
    let wrong_kafka = "waittimes-WRONG-kafka-secret";
    let basic = |user: &str, pw: &str| base64(format!("{user}:{pw}").as_bytes());
    let secrets_owned = [
        wrong_kafka.to_owned(),
        "sr-log-secret".to_owned(),
        "sr-WRONG-secret".to_owned(),
        basic("sr-log", "sr-log-secret"),
        basic("sr-log", "sr-WRONG-secret"),
        basic(&kafka.user, wrong_kafka),
    ];
    let secrets: Vec<&str> = secrets_owned.iter().map(String::as_str).collect();
    let port = free_port();
    let ready_url = format!("http://127.0.0.1:{port}/health/ready");
    let client = reqwest::Client::new();

    // Run 1: the registry rejects the password (401); the service retries, not ready.
    dir.write("client.properties", &ssl_client_properties(&kafka));
    dir.write(
        "schema.properties",
        &schema_properties(&sr, "sr-log", "sr-WRONG-secret"),
    );
    let config = dir.write(
        "waittimes.toml",
        &service_toml(
            &topics,
            &common::unique("logs"),
            &format!("127.0.0.1:{port}"),
        ),
    );
    let mut run = Binary::start(&dir, &config, "registry-401", "human");
    let out = run
        .wait_for("a registry 401", |o| {
            o.contains("credentials") && o.contains("401")
        })
        .await;
    let (status, body) = get_json(&client, &ready_url)
        .await
        .expect("readiness answers");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.to_string().contains("schema_registry"),
        "readiness does not name the registry: {body}"
    );
    assert!(out.contains("starting"), "no startup summary:\n{out}");
    assert!(
        out.contains("password"),
        "the summary shows no password key:\n{out}"
    );
    assert_no_secret(&out, &secrets);
    assert_no_secret(&body.to_string(), &secrets);
    drop(run);

    // Run 2: the registry accepts, the broker rejects the password of Confluent Cloud's file.
    dir.write(
        "client.properties",
        &confluent_cloud_client_properties(&kafka, wrong_kafka),
    );
    dir.write(
        "schema.properties",
        &schema_properties(&sr, "sr-log", "sr-log-secret"),
    );
    let config = dir.write(
        "waittimes.toml",
        &service_toml(
            &topics,
            &common::unique("logs"),
            &format!("127.0.0.1:{port}"),
        ),
    );
    let mut run = Binary::start(&dir, &config, "kafka-auth", "json");
    // It keeps retrying rather than exiting: still serving, not ready, and saying why in
    // words that point at the credentials, not at the network.
    let deadline = Instant::now() + TIMEOUT * 2;
    let body = loop {
        if let Some((status, body)) = get_json(&client, &ready_url).await {
            assert_eq!(status, 503, "{body}");
            assert_no_secret(&body.to_string(), &secrets);
            if body["reasons"]["priors"]
                .as_str()
                .is_some_and(|r| r.contains("authentication failed"))
            {
                break body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "readiness never said \"authentication failed\": {:?}\n{}",
            get_json(&client, &ready_url).await,
            run.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let reason = body["reasons"]["priors"].as_str().unwrap_or_default();
    assert!(reason.contains("Invalid username or password"), "{body}");
    assert!(
        !body.to_string().to_lowercase().contains("transport"),
        "{body}"
    );
    // Whatever it logs while it retries is still free of secrets.
    let out = run.settle(Duration::from_secs(5)).await;
    assert!(out.contains("authentication failed"), "{out}");
    assert!(out.contains("SASL authentication error"), "{out}");
    assert_no_secret(&out, &secrets);
    let (status, body) = get_json(&client, &ready_url).await.unwrap_or_else(|| {
        panic!("the service stopped serving after rejected credentials:\n{out}")
    });
    assert_eq!(status, 503, "{body}");
    drop(run);
}
