//! A real Apache Kafka broker for tests: Kafka 4 as a single KRaft node (broker and
//! controller in one JVM) on 127.0.0.1, with a freshly formatted log directory, transactions
//! enabled with replication factor 1; started and stopped by the test. Its jars come from
//! Maven Central through `e2e/kafka/fetch.sh` (which `scripts/setup.sh --test` runs). Also
//! the test's own Kafka client work: topics, producing input, reading output as a
//! `read_committed` or `read_uncommitted` consumer.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::ToBytes;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

/// The Kafka version `e2e/kafka/pom.xml` fetches.
pub const KAFKA_VERSION: &str = "4.4.0";

/// The broker's jars: `$WEIR_KAFKA_LIBS`, or `~/.cache/weir-tools/kafka-<version>/libs`
/// where `scripts/setup.sh --test` puts them.
///
/// # Panics
/// When neither holds Kafka's jars, saying how to fetch them.
pub fn kafka_libs() -> PathBuf {
    let dir = std::env::var("WEIR_KAFKA_LIBS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(format!(".cache/weir-tools/kafka-{KAFKA_VERSION}/libs"))
        });
    assert!(
        dir.join(format!("kafka_2.13-{KAFKA_VERSION}.jar")).exists(),
        "Kafka's jars are not in {}: fetch them with `bash e2e/kafka/fetch.sh` (scripts/setup.sh --test does) or set WEIR_KAFKA_LIBS",
        dir.display()
    );
    dir
}

/// How a consumer sees transactional output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Only committed transactions (and non-transactional records).
    ReadCommitted,
    /// Everything written, aborted transactions included.
    ReadUncommitted,
}

/// One record as the test reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Key, as text.
    pub key: Option<String>,
    /// Value, as text.
    pub value: Option<String>,
    /// Timestamp, ms.
    pub timestamp: Option<i64>,
    /// Headers, as text.
    pub headers: Vec<(String, String)>,
}

/// A running single-node Kafka. Time-based retention is off (`log.retention.ms=-1`): the test
/// records carry 2024 timestamps, which the default 7-day retention deletes about 30 s after
/// the broker starts, when its first retention check runs.
pub struct KafkaBroker {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// The client port (PLAINTEXT, no authentication).
    pub port: u16,
    /// The port of the SASL_PLAINTEXT listener: mechanism PLAIN, user [`SASL_USER`] with
    /// password [`SASL_PASSWORD`].
    pub sasl_port: u16,
}

/// The user the SASL listener knows.
pub const SASL_USER: &str = "weir";
/// Its password.
pub const SASL_PASSWORD: &str = "weir-kafka-secret";

impl KafkaBroker {
    /// Formats a log directory and starts the broker; returns once it answers metadata
    /// requests.
    ///
    /// # Panics
    /// When Java or Kafka's jars are missing, or the broker does not come up in 90 s (its
    /// log is in the message).
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let [port, controller, sasl_port] = crate::free_ports();
        let properties = format!(
            "process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller},SASL_PLAINTEXT://127.0.0.1:{sasl_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"{SASL_USER}\" password=\"{SASL_PASSWORD}\" user_{SASL_USER}=\"{SASL_PASSWORD}\";
inter.broker.listener.name=PLAINTEXT
log.dirs={logs}
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
transaction.max.timeout.ms=900000
log.retention.ms=-1
",
            logs = dir.path().join("logs").display()
        );
        let config = dir.path().join("server.properties");
        std::fs::write(&config, properties).expect("write server.properties");
        let classpath = format!("{}/*", kafka_libs().display());
        let format = Command::new("java")
            .args(["-cp", &classpath, "kafka.tools.StorageTool", "format", "-t"])
            .arg("weir-test-cluster-0001")
            .arg("-c")
            .arg(&config)
            .output()
            .expect("java (Java 17) to format Kafka's log directory");
        assert!(
            format.status.success(),
            "formatting Kafka's log directory failed: {}",
            String::from_utf8_lossy(&format.stderr)
        );
        let mut broker = KafkaBroker {
            child: None,
            dir,
            port,
            sasl_port,
        };
        broker.launch();
        broker
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    fn launch(&mut self) {
        let classpath = format!("{}/*", kafka_libs().display());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("broker log");
        let child = Command::new("java")
            .args([
                "-Xms256m",
                "-Xmx512m",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                "-cp",
                &classpath,
                "kafka.Kafka",
            ])
            .arg(self.dir.path().join("server.properties"))
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start the Kafka broker (java)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("the Kafka broker exited ({status}):\n{}", self.log_tail());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.answers() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "the Kafka broker did not come up in 90 s:\n{}",
            self.log_tail()
        );
    }

    fn answers(&self) -> bool {
        let consumer: BaseConsumer = match self.client_config().create() {
            Ok(c) => c,
            Err(_) => return false,
        };
        consumer
            .fetch_metadata(None, Duration::from_secs(2))
            .is_ok_and(|m| !m.brokers().is_empty())
    }

    /// The last 60 lines of the broker's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// `127.0.0.1:<sasl_port>`: the listener that wants SASL PLAIN credentials.
    pub fn sasl_bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.sasl_port)
    }

    /// `127.0.0.1:<port>`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Where its log directory is.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the broker with SIGKILL (its log directory stays).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker again on the same ports and log directory.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap());
        c
    }

    fn admin(&self) -> AdminClient<DefaultClientContext> {
        self.client_config().create().expect("admin client")
    }

    /// Creates `topic` with `partitions` partitions (replication factor 1).
    ///
    /// # Panics
    /// When the broker refuses.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin = self.admin();
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let results =
            block_on(admin.create_topics([&new], &AdminOptions::new())).expect("create topics");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
        }
        self.wait_for_partitions(topic, partitions);
    }

    /// Grows `topic` to `total` partitions.
    pub fn add_partitions(&self, topic: &str, total: usize) {
        let admin = self.admin();
        let grow = NewPartitions::new(topic, total);
        let results = block_on(admin.create_partitions([&grow], &AdminOptions::new()))
            .expect("create partitions");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("add partitions to {t}: {e}"));
        }
        self.wait_for_partitions(topic, total as i32);
    }

    fn wait_for_partitions(&self, topic: &str, partitions: i32) {
        let consumer: BaseConsumer = self.client_config().create().expect("consumer");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(m) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
                if m.topics()
                    .first()
                    .is_some_and(|t| t.partitions().len() as i32 >= partitions)
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("topic {topic} did not get {partitions} partitions");
    }

    /// Writes `records` (partition, key, value, timestamp ms) to `topic` and waits until all
    /// are acknowledged.
    pub fn produce(&self, topic: &str, records: &[(i32, Option<&str>, &str, i64)]) {
        let producer: ThreadedProducer<DefaultProducerContext> = self
            .client_config()
            .set("linger.ms", "5")
            .set("enable.idempotence", "true")
            .create()
            .expect("producer");
        for (partition, key, value, ts) in records {
            let mut r = BaseRecord::<str, str>::to(topic)
                .partition(*partition)
                .payload(*value)
                .timestamp(*ts);
            if let Some(k) = key {
                r = r.key(*k);
            }
            send(&producer, r);
        }
        producer
            .flush(Duration::from_secs(60))
            .expect("flush produced records");
    }

    /// Every record of `topic` up to its current end, as a consumer with `isolation` sees
    /// them, in partition then offset order.
    pub fn read_all(&self, topic: &str, isolation: Isolation) -> Vec<ReadRecord> {
        let level = match isolation {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        };
        let consumer: BaseConsumer = self
            .client_config()
            .set("group.id", "weir-test-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", level)
            .create()
            .expect("consumer");
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let partitions: Vec<i32> = metadata.topics()[0]
            .partitions()
            .iter()
            .map(|p| p.id())
            .collect();
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(topic, *p, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&tpl).expect("assign");
        let mut ended = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while ended.len() < partitions.len() {
            assert!(Instant::now() < deadline, "reading {topic} took over 60 s");
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    ended.insert(p);
                }
                Some(Err(e)) => panic!("read {topic}: {e}"),
                Some(Ok(m)) => {
                    let text =
                        |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_string(), text(h.value).unwrap_or_default()))
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push(ReadRecord {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: text(m.key()),
                        value: text(m.payload()),
                        timestamp: m.timestamp().to_millis(),
                        headers,
                    });
                }
            }
        }
        out.sort_by_key(|r| (r.partition, r.offset));
        out
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs an admin future to completion on a one-thread runtime.
/// Hands `record` to `producer`, waiting while its local queue is full.
///
/// # Panics
/// On any other produce error, naming the topic.
pub fn send<K: ToBytes + ?Sized, V: ToBytes + ?Sized>(
    producer: &ThreadedProducer<DefaultProducerContext>,
    mut record: BaseRecord<'_, K, V>,
) {
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, r)) => panic!("produce to {}: {e}", r.topic),
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
        .block_on(f)
}
