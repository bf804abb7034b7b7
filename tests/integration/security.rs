//! Security against real servers: TLS to a private Tansu broker and SASL_SSL as far as Tansu
//! goes, the Schema Registry over https with basic auth, everything configured from Confluent
//! property files, and no secret in any log line or error.
//!
//! Tansu 0.6 cannot serve TLS itself (its `--cert` and `--key` flags exclude each other, and its
//! listener never wraps connections in TLS), so nginx's stream module terminates TLS in front of
//! it, as a load balancer does in front of a broker. The broker advertises the TLS address, so
//! every connection a client makes after bootstrap goes through TLS too. The registry
//! (rivven-schema, no TLS or auth of its own) sits behind an nginx https server with basic auth.
//! Certificates come from a private CA generated per test with the `openssl` CLI.
//!
//! SASL: the pinned Tansu build accepts no credentials at all (SASL built with SCRAM only, and
//! its memory:// and s3:// storage neither store nor look up SCRAM credentials), so a
//! successful SASL login cannot be shown against it; the tests show that our configuration path
//! speaks SASL_SSL with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 to the real broker and that a
//! rejection is a clear error, with the service not ready and no secret anywhere.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
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

use crate::broker::{BrokerOptions, PrivateBroker, free_port};
use crate::common::{self, TIMEOUT};

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

/// What nginx fronts: a TLS listener for Kafka (stream), an https + basic-auth listener for the
/// registry (http), or both.
#[derive(Default)]
struct NginxSites {
    /// (TLS port, plaintext broker port).
    kafka: Option<(u16, u16)>,
    /// (https port, registry `host:port`, user, password).
    registry: Option<(u16, String, String, String)>,
}

/// nginx in the foreground as the current user (`master_process off`), config, pid and logs in
/// the scratch directory. Killed on drop.
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

/// Debian's dynamic stream module (package `libnginx-mod-stream`).
const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

impl Nginx {
    fn start(dir: &Scratch, pki: &Pki, sites: &NginxSites) -> Nginx {
        let d = dir.0.display();
        let mut conf = String::new();
        if sites.kafka.is_some() {
            conf.push_str(&format!("load_module {STREAM_MODULE};\n"));
        }
        conf.push_str(&format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 512; }}\n"
        ));
        let tls = format!(
            "ssl_certificate {};\n ssl_certificate_key {};\n ssl_protocols TLSv1.2 TLSv1.3;\n",
            pki.cert.display(),
            pki.key.display()
        );
        let mut ports = Vec::new();
        if let Some((tls_port, broker_port)) = sites.kafka {
            conf.push_str(&format!(
                "stream {{\n server {{\n listen 127.0.0.1:{tls_port} ssl;\n {tls}\
                 proxy_pass 127.0.0.1:{broker_port};\n }}\n}}\n"
            ));
            ports.push(tls_port);
        }
        if let Some((port, upstream, user, password)) = &sites.registry {
            let hash = openssl(&dir.0, &["passwd", "-apr1", "-stdin"], Some(password));
            dir.write("htpasswd", &format!("{user}:{}\n", hash.trim()));
            conf.push_str(&format!(
                "http {{\n access_log {d}/access.log;\n client_body_temp_path {d}/body;\n\
                 proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n\
                 uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
                 server {{\n listen 127.0.0.1:{port} ssl;\n {tls}\
                 auth_basic \"schema registry\";\n auth_basic_user_file {d}/htpasswd;\n\
                 location / {{\n proxy_pass http://{upstream};\n\
                 proxy_set_header Authorization \"\";\n }}\n }}\n}}\n"
            ));
            ports.push(*port);
        }
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
                    "start {} ({e}): install Debian's `nginx` and `libnginx-mod-stream` \
                     (scripts/test does), or set WAITTIMES_NGINX_BIN",
                    bin.display()
                )
            });
        let deadline = Instant::now() + TIMEOUT;
        for port in ports {
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

// ---- a TLS broker ---------------------------------------------------------------------------------

/// A private Tansu reachable only through nginx's TLS listener; with `--authentication` when
/// `sasl` is set.
struct SecureKafka {
    dir: Scratch,
    pki: Pki,
    broker: PrivateBroker,
    nginx: Nginx,
    tls_port: u16,
}

impl SecureKafka {
    fn start(sasl: bool) -> SecureKafka {
        let dir = Scratch::new();
        let pki = Pki::generate(&dir);
        let tls_port = free_port();
        let broker = PrivateBroker::start(BrokerOptions {
            advertised: Some(format!("127.0.0.1:{tls_port}")),
            extra_args: if sasl {
                vec!["--authentication".into()]
            } else {
                Vec::new()
            },
            ..Default::default()
        });
        let nginx = Nginx::start(
            &dir,
            &pki,
            &NginxSites {
                kafka: Some((tls_port, broker.port())),
                registry: None,
            },
        );
        SecureKafka {
            dir,
            pki,
            broker,
            nginx,
            tls_port,
        }
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.tls_port)
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
/// uses.
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
            .unwrap_or_else(|(e, _)| panic!("{label}: produce over TLS: {e}"));
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
        .unwrap_or_else(|e| panic!("{label}: commit over TLS: {e}"));
}

/// A Confluent Cloud-style `client.properties` for SSL (no SASL) to this broker, with the
/// private CA and a Java-only key.
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
        kafka.bootstrap(),
        kafka.pki.ca.display()
    )
}

/// A Confluent Cloud-style SASL_SSL `client.properties` (Java JAAS line) for this broker.
fn jaas_client_properties(kafka: &SecureKafka, mechanism: &str, user: &str, pw: &str) -> String {
    let module = if mechanism == "PLAIN" {
        "org.apache.kafka.common.security.plain.PlainLoginModule"
    } else {
        "org.apache.kafka.common.security.scram.ScramLoginModule"
    };
    format!(
        "bootstrap.servers={}\n\
         security.protocol=SASL_SSL\n\
         sasl.mechanism={mechanism}\n\
         sasl.jaas.config={module} required username='{user}' password='{pw}';\n\
         ssl.ca.location={}\n\
         session.timeout.ms=6000\n",
        kafka.bootstrap(),
        kafka.pki.ca.display()
    )
}

fn kafka_toml(group: &str) -> String {
    format!("[kafka]\nclient_properties = \"client.properties\"\ngroup_id = \"{group}\"\n")
}

/// Connects with `config` and returns the errors librdkafka reported before giving up.
async fn connection_errors(mut config: ClientConfig) -> (Result<(), KafkaError>, Vec<String>) {
    config.set("group.id", common::unique("probe"));
    let errors = Errors::default();
    let consumer: StreamConsumer<Errors> = config
        .create_with_context(errors.clone())
        .expect("consumer");
    let result = tokio::task::spawn_blocking(move || {
        consumer
            .fetch_metadata(None, Duration::from_secs(8))
            .map(|_| ())
    })
    .await
    .expect("metadata task");
    (result, errors.all())
}

// ---- Kafka tests -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_over_tls_from_a_client_properties_file() {
    let kafka = SecureKafka::start(false);
    kafka
        .dir
        .write("client.properties", &ssl_client_properties(&kafka));
    let config = load_config(&kafka.dir, &kafka_toml(&common::unique("tls")));
    let props = config.kafka_properties();
    assert_eq!(props.get("security.protocol"), Some("SSL"));
    assert_eq!(
        props.get("ssl.ca.location"),
        Some(kafka.pki.ca.display().to_string().as_str())
    );
    assert!(
        config
            .warnings()
            .iter()
            .any(|w| w.contains("key.serializer")),
        "{:?}",
        config.warnings()
    );
    round_trip(&config, "tls").await;

    // The TLS is real: without the private CA the broker's certificate is refused...
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
async fn sasl_ssl_from_client_properties_reaches_the_broker_and_fails_clearly() {
    // Tansu 0.6 (the pinned build) accepts no credentials at all: its SASL is built with SCRAM
    // only (no PLAIN), and its only storage engines (memory://, s3://) neither store nor look up
    // SCRAM credentials. So this checks the client side against the real broker: our config
    // path speaks SASL_SSL with each mechanism from Confluent's files, and a rejection is a
    // clear error that shows no secret.
    let kafka = SecureKafka::start(true);
    let cases = [
        (
            "SCRAM-SHA-256",
            format!(
                "bootstrap.servers={}\nsecurity.protocol=SASL_SSL\nsasl.mechanisms=SCRAM-SHA-256\n\
                 sasl.username=alice\nsasl.password=alice-256-secret\nssl.ca.location={}\n",
                kafka.bootstrap(),
                kafka.pki.ca.display()
            ),
            "alice-256-secret",
            "SASL authentication error",
        ),
        (
            "SCRAM-SHA-512",
            jaas_client_properties(&kafka, "SCRAM-SHA-512", "bob", "bob-512-secret"),
            "bob-512-secret",
            "SASL authentication error",
        ),
        (
            "PLAIN",
            jaas_client_properties(&kafka, "PLAIN", "carol", "carol-plain-secret"),
            "carol-plain-secret",
            "SASL PLAIN mechanism handshake failed",
        ),
    ];
    for (mechanism, properties, secret, expected) in cases {
        kafka.dir.write("client.properties", &properties);
        let config = load_config(&kafka.dir, &kafka_toml(&common::unique("sasl")));
        let props = config.kafka_properties();
        assert_eq!(props.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(props.get("sasl.mechanisms"), Some(mechanism));
        assert_eq!(props.get("sasl.password"), Some(secret), "{mechanism}");
        let (result, errors) = connection_errors(config.consumer_config()).await;
        assert!(
            result.is_err(),
            "{mechanism}: rejected credentials connected"
        );
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{mechanism}: no clear error ({expected}) in {errors:#?}"
        );
        // TLS was negotiated before SASL: the failure is not a certificate problem.
        assert!(
            !errors
                .iter()
                .any(|e| e.contains("certificate verify failed")),
            "{errors:#?}"
        );
        for text in errors
            .iter()
            .cloned()
            .chain([config.redacted_summary(), format!("{config:?}")])
        {
            assert!(!text.contains(secret), "{mechanism}: secret in {text}");
        }
    }
}

// ---- the registry over https with basic auth --------------------------------------------------------

/// rivven-schema from the shared stack behind nginx: https with the private CA, basic auth.
struct SecureRegistry {
    dir: Scratch,
    pki: Pki,
    _nginx: Nginx,
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
        let nginx = Nginx::start(
            &dir,
            &pki,
            &NginxSites {
                kafka: None,
                registry: Some((port, upstream, user.to_owned(), password.to_owned())),
            },
        );
        SecureRegistry {
            dir,
            pki,
            _nginx: nginx,
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Topic names and the `[topics]` table that points the service at them.
struct Topics {
    orders: String,
    completed: String,
    cancelled: String,
    wait_times: String,
    dead_letter: String,
}

impl Topics {
    fn new() -> Topics {
        Topics {
            orders: common::unique("pizza_orders_avro"),
            completed: common::unique("pizza_orders_completed_avro"),
            cancelled: common::unique("pizza_orders_cancelled_avro"),
            wait_times: common::unique("waittimes_avro"),
            dead_letter: common::unique("waittimes_dlq"),
        }
    }

    fn toml(&self) -> String {
        format!(
            "[topics]\norders = \"{}\"\ncompleted = \"{}\"\ncancelled = \"{}\"\n\
             wait_times = \"{}\"\ndead_letter = \"{}\"\n",
            self.orders, self.completed, self.cancelled, self.wait_times, self.dead_letter
        )
    }

    async fn create(&self, config: &Config) {
        for t in [
            &self.orders,
            &self.completed,
            &self.cancelled,
            &self.wait_times,
            &self.dead_letter,
        ] {
            create_topic(config, t, 1).await;
        }
    }
}

/// The service's TOML for a secured run: Kafka from client.properties, the registry from
/// schema.properties, short emit interval and session timeout for the test.
fn service_toml(topics: &Topics, group: &str, listen: &str) -> String {
    format!(
        "[kafka]\nclient_properties = \"client.properties\"\ngroup_id = \"{group}\"\n\
         [kafka.properties]\n\"session.timeout.ms\" = 6000\n\
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
    let kafka = SecureKafka::start(false);
    kafka
        .dir
        .write("client.properties", &ssl_client_properties(&kafka));
    service_gives_a_live_wait_time(&kafka.dir, &|| {
        format!(
            "broker:\n{}\nnginx:\n{}",
            kafka.broker.log(),
            kafka.nginx.log()
        )
    })
    .await;
}

/// Runs the service in-process from `dir`'s client.properties (written by the caller) and a
/// schema.properties for a secured registry (written here): one order and its completion 12
/// minutes later, produced through the same Kafka settings, give a live 12 over HTTP.
async fn service_gives_a_live_wait_time(dir: &Scratch, diagnostics: &dyn Fn() -> String) {
    let sr = SecureRegistry::start("sr-svc", "sr-svc-secret");
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

fn assert_no_secret(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "secret {s:?} appears in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_show_a_secret_through_startup_auth_failures_and_a_registry_401() {
    let tls_kafka = SecureKafka::start(false);
    let sasl_kafka = SecureKafka::start(true);
    let sr = SecureRegistry::start("sr-log", "sr-log-secret");
    let topics = Topics::new();
    let basic = |user: &str, pw: &str| base64(format!("{user}:{pw}").as_bytes());
    let secrets_owned = [
        "dave-kafka-secret".to_owned(),
        "sr-log-secret".to_owned(),
        "sr-WRONG-secret".to_owned(),
        basic("sr-log", "sr-log-secret"),
        basic("sr-log", "sr-WRONG-secret"),
    ];
    let secrets: Vec<&str> = secrets_owned.iter().map(String::as_str).collect();

    // Run 1: the registry rejects the password (401); the service retries, not ready.
    let kafka = &tls_kafka;
    kafka
        .dir
        .write("client.properties", &ssl_client_properties(kafka));
    kafka.dir.write(
        "schema.properties",
        &schema_properties(&sr, "sr-log", "sr-WRONG-secret"),
    );
    let port = free_port();
    let config = kafka.dir.write(
        "waittimes.toml",
        &service_toml(
            &topics,
            &common::unique("logs"),
            &format!("127.0.0.1:{port}"),
        ),
    );
    let mut run = Binary::start(&kafka.dir, &config, "registry-401", "human");
    let out = run
        .wait_for("a registry 401", |o| {
            o.contains("credentials") && o.contains("401")
        })
        .await;
    let client = reqwest::Client::new();
    let ready = get_json(&client, &format!("http://127.0.0.1:{port}/health/ready")).await;
    let (status, body) = ready.expect("readiness answers");
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

    // Run 2: the registry accepts, the broker rejects the SASL credentials.
    let kafka = &sasl_kafka;
    kafka.dir.write(
        "client.properties",
        &jaas_client_properties(kafka, "SCRAM-SHA-256", "dave", "dave-kafka-secret"),
    );
    kafka.dir.write(
        "schema.properties",
        &schema_properties(&sr, "sr-log", "sr-log-secret"),
    );
    let config = kafka.dir.write(
        "waittimes.toml",
        &service_toml(
            &topics,
            &common::unique("logs"),
            &format!("127.0.0.1:{port}"),
        ),
    );
    let mut run = Binary::start(&kafka.dir, &config, "kafka-auth", "json");
    let out = run
        .wait_for("a SASL authentication failure", |o| {
            o.contains("SASL authentication error")
        })
        .await;
    let ready = get_json(&client, &format!("http://127.0.0.1:{port}/health/ready")).await;
    if let Some((status, body)) = ready {
        assert_eq!(status, 503, "{body}");
        assert_no_secret(&body.to_string(), &secrets);
    }
    assert_no_secret(&out, &secrets);
    // Whatever it logs while it retries, or as it gives up, is still free of secrets.
    let out = run.settle(TIMEOUT).await;
    assert!(out.contains("SASL authentication error"), "{out}");
    assert_no_secret(&out, &secrets);
    // It keeps retrying rather than exiting: still serving, not ready, and saying why.
    let (status, body) = get_json(&client, &format!("http://127.0.0.1:{port}/health/ready"))
        .await
        .unwrap_or_else(|| {
            panic!("the service stopped serving after rejected credentials:\n{out}")
        });
    assert_eq!(status, 503, "{body}");
    assert!(
        body["reasons"]["priors"]
            .as_str()
            .is_some_and(|r| r.contains("failed")),
        "{body}"
    );
    assert_no_secret(&body.to_string(), &secrets);
    drop(run);
}

// ---- SASL logins against a Tansu that stores SCRAM credentials ---------------------------------------

/// A broker process of this test's own, killed on drop.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `bin broker` on 127.0.0.1:`port` with `storage`, and waits until it listens.
fn spawn_tansu(
    bin: &Path,
    dir: &Scratch,
    port: u16,
    advertised: u16,
    storage: &str,
    auth: bool,
) -> Spawned {
    let log = std::fs::File::create(dir.path(&format!("tansu-{port}-{auth}.log"))).expect("log");
    let mut cmd = Command::new(bin);
    cmd.arg("broker")
        .args(["--listener-url", &format!("tcp://127.0.0.1:{port}")])
        .args([
            "--advertised-listener-url",
            &format!("tcp://127.0.0.1:{advertised}"),
        ])
        .args(["--storage-engine", storage])
        .args(["--cluster-id", "waittimes-scram"])
        .arg("--silent")
        .current_dir(&dir.0)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone"))
        .stderr(log);
    if auth {
        cmd.arg("--authentication");
    }
    let mut child = Spawned(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display())),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + TIMEOUT;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("{} exited at start: {status}", bin.display());
        }
        assert!(
            Instant::now() < deadline,
            "{} never listened",
            bin.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Tansu with SCRAM storage: `cargo install tansu@0.6.0 --locked --features libsql`, \
            then WAITTIMES_TANSU_SCRAM_BIN=<its bin/tansu> cargo test --test integration -- --ignored scram"]
async fn scram_sha_256_and_512_log_in_over_tls_from_client_properties() {
    let bin = PathBuf::from(
        std::env::var("WAITTIMES_TANSU_SCRAM_BIN")
            .expect("WAITTIMES_TANSU_SCRAM_BIN: a tansu binary built with the libsql feature"),
    );
    let dir = Scratch::new();
    let pki = Pki::generate(&dir);
    // Tansu resolves the database path against its working directory (the scratch directory).
    let storage = "sqlite://tansu.db";
    let port = free_port();
    let tls_port = free_port();
    // Users are created on the plaintext broker (Tansu requires an authenticated connection for
    // AlterUserScramCredentials, and no user exists yet); the same database then backs the
    // authenticating broker.
    {
        let _setup = spawn_tansu(&bin, &dir, port, port, storage, false);
        for (mechanism, user, password) in [
            ("scram256", "alice", "alice-256-secret"),
            ("scram512", "bob", "bob-512-secret"),
        ] {
            let out = Command::new(&bin)
                .args([
                    "user",
                    "create",
                    "--broker",
                    &format!("tcp://127.0.0.1:{port}"),
                ])
                .args(["--mechanism", mechanism, user, password])
                .output()
                .expect("tansu user create");
            assert!(
                out.status.success(),
                "tansu user create {user}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let _broker = spawn_tansu(&bin, &dir, port, tls_port, storage, true);
    let _nginx = Nginx::start(
        &dir,
        &pki,
        &NginxSites {
            kafka: Some((tls_port, port)),
            registry: None,
        },
    );
    let bootstrap = format!("127.0.0.1:{tls_port}");
    let ca = pki.ca.display().to_string();
    let librdkafka_style = |mechanism: &str, user: &str, password: &str| {
        format!(
            "bootstrap.servers={bootstrap}\nsecurity.protocol=SASL_SSL\nsasl.mechanisms={mechanism}\n\
             sasl.username={user}\nsasl.password={password}\nssl.ca.location={ca}\n\
             session.timeout.ms=6000\n"
        )
    };
    let java_style = |mechanism: &str, user: &str, password: &str| {
        format!(
            "bootstrap.servers={bootstrap}\nsecurity.protocol=SASL_SSL\nsasl.mechanism={mechanism}\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \
             username=\"{user}\" password=\"{password}\";\nssl.ca.location={ca}\n\
             session.timeout.ms=6000\n"
        )
    };
    dir.write(
        "client.properties",
        &librdkafka_style("SCRAM-SHA-256", "alice", "alice-256-secret"),
    );
    round_trip(
        &load_config(&dir, &kafka_toml(&common::unique("s256"))),
        "scram256",
    )
    .await;
    dir.write(
        "client.properties",
        &java_style("SCRAM-SHA-512", "bob", "bob-512-secret"),
    );
    round_trip(
        &load_config(&dir, &kafka_toml(&common::unique("s512"))),
        "scram512",
    )
    .await;
    // The whole service over SASL_SSL SCRAM-SHA-512 and the https registry.
    service_gives_a_live_wait_time(&dir, &|| {
        std::fs::read_to_string(dir.path(&format!("tansu-{port}-true.log"))).unwrap_or_default()
    })
    .await;
    // A wrong password for a user that exists: a clear error without the password.
    for properties in [
        librdkafka_style("SCRAM-SHA-256", "alice", "alice-WRONG-secret"),
        java_style("SCRAM-SHA-512", "bob", "bob-WRONG-secret"),
        // The right password under the other mechanism has no credential either.
        java_style("SCRAM-SHA-512", "alice", "alice-256-secret"),
    ] {
        dir.write("client.properties", &properties);
        let config = load_config(&dir, &kafka_toml(&common::unique("wrong")));
        let (result, errors) = connection_errors(config.consumer_config()).await;
        assert!(result.is_err(), "a wrong password connected: {properties}");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("SASL authentication error")),
            "{errors:#?}"
        );
        for e in &errors {
            for secret in ["WRONG-secret", "alice-256-secret", "bob-512-secret"] {
                assert!(!e.contains(secret), "{e}");
            }
        }
    }
}
