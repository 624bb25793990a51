//! Kafka -> 10 s tumbling event-time window, count per auction -> Kafka, exactly once,
//! parallelism 2, checkpoints every 10 s: Weir's `csv-window-aggregate` beside Apache Flink 2.3
//! (PyFlink SQL with `flink-sql-connector-kafka`, `kafka_flink.py` next to this file) on the
//! same single-node Kafka 4 broker (the test harness's), in the same run.
//!
//! ```text
//! cargo build --release -p weir-runtime && cargo bench -p weir-e2e --bench kafka
//! ```
//!
//! Throughput: the bid data of `../shared/bench` (`WEIR_BENCH_ROWS`, default 10,000,000, two
//! files) loaded into a topic of 2 partitions (file i to partition i, record timestamp = the
//! bid's time), then each system reads it from the earliest to the end offsets at start and
//! writes its results in transactions to a topic of its own; records/s from process start (Weir)
//! or job submission (Flink) to finish, the peak memory of the process tree, and a check that
//! every input row is counted exactly once in the committed results (the sum of their counts).
//!
//! Latency: a producer writes live bids (event time = now) at `WEIR_BENCH_LIVE_RATE` records/s
//! (default 50,000) for `WEIR_BENCH_LIVE_SECONDS` (default 60) into a fresh topic while each
//! system runs unbounded over it; a `read_committed` consumer notes when each result becomes
//! visible. Latency = visible time - window end, over the windows that closed while the
//! producer ran (it includes the 5 s out-of-orderness bound and the wait for the checkpoint
//! that commits the window's transaction: at most 10 s). Printed as p50 / p99 / max in ms.
//!
//! Environment: `WEIR_BENCH_BACKENDS` (default `heap,rocksdb`), `WEIR_BENCH_LIVE=0` (skip the
//! latency runs), `WEIR_BENCH_FLINK=0` (Weir alone), `WEIR_BENCH_FLINK_TIMEOUT` (s, default 900).
//! Flink's connector jar (5.0.0-2.2, the newest on Maven Central; it runs on 2.3) is fetched
//! with Maven into `~/.cache/weir-tools/flink-connectors/` on first use.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use weir_e2e::bids::env_or;
use weir_e2e::flink::{flink_python, process_tree, run_watched, Limit, Watched};
use weir_e2e::kafka::KafkaBroker;
use weir_e2e::{bids, timed_run, weir_bin};

/// Flink's Kafka SQL connector on Maven Central (the newest; it runs on Flink 2.3).
const CONNECTOR_ARTIFACT: &str = "flink-sql-connector-kafka";
const CONNECTOR_VERSION: &str = "5.0.0-2.2";
const PARTITIONS: i32 = 2;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Flink's Kafka SQL connector jar, fetched with Maven when missing.
fn connector_jar() -> Result<PathBuf, String> {
    let home = std::env::var("HOME").map_err(|_| "HOME is not set")?;
    let dir = Path::new(&home).join(".cache/weir-tools/flink-connectors");
    let jar = dir.join(format!("{CONNECTOR_ARTIFACT}-{CONNECTOR_VERSION}.jar"));
    let coordinate = format!("org.apache.flink:{CONNECTOR_ARTIFACT}:{CONNECTOR_VERSION}");
    if !jar.exists() {
        let ok = Command::new("mvn")
            .args(["-q", "-B", "dependency:copy"])
            .arg(format!("-Dartifact={coordinate}"))
            .arg(format!("-DoutputDirectory={}", dir.display()))
            .status()
            .is_ok_and(|s| s.success());
        if !ok || !jar.exists() {
            return Err(format!("could not fetch {coordinate} with Maven"));
        }
    }
    Ok(jar)
}

fn producer(broker: &KafkaBroker) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .expect("producer")
}

/// Sends `value` to `partition` of `topic` with event time `ts`.
fn send(
    p: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    partition: i32,
    value: &str,
    ts: i64,
) {
    let record = BaseRecord::<(), str>::to(topic)
        .partition(partition)
        .payload(value)
        .timestamp(ts);
    weir_e2e::kafka::send(p, record);
}

/// `ms` since the epoch as `YYYY-MM-DD HH:MM:SS.mmm` (UTC), the bids' time format.
fn format_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("a time in range")
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string()
}

/// `YYYY-MM-DD HH:MM:SS[.fff]` (UTC; quotes allowed) as ms since the epoch.
fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim().trim_matches('"');
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

/// Loads the bid files of `dir` into `topic`, file i to partition i; returns rows and seconds.
fn load(broker: &KafkaBroker, topic: &str, dir: &Path) -> (u64, f64) {
    let started = Instant::now();
    let p = producer(broker);
    let mut rows = 0;
    for partition in 0..PARTITIONS {
        let text =
            std::fs::read_to_string(dir.join(format!("part-{partition}.csv"))).expect("bids");
        for line in text.lines() {
            let ts = line.rsplit(',').next().and_then(parse_time).expect("ts");
            send(&p, topic, partition, line, ts);
            rows += 1;
        }
    }
    p.flush(Duration::from_secs(300)).expect("flush");
    (rows, started.elapsed().as_secs_f64())
}

/// Reads `topic` as a `read_committed` consumer from the beginning, handing each value and the
/// time it became visible (ms) to `f`, until every partition is at its end (`live` false) or
/// `stop` is set (`live` true).
fn consume(
    bootstrap: &str,
    topic: &str,
    stop: &AtomicBool,
    live: bool,
    mut f: impl FnMut(&[u8], i64),
) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-reader-{topic}"))
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut at_end = std::collections::BTreeSet::new();
    let mut last = Instant::now();
    loop {
        if live && stop.load(Ordering::Relaxed) {
            return;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last = Instant::now();
                f(m.payload().unwrap_or_default(), now_ms())
            }
            Some(Err(KafkaError::PartitionEOF(p))) if !live => {
                at_end.insert(p);
                if at_end.len() == PARTITIONS as usize {
                    return;
                }
            }
            _ => {}
        }
        if !live && last.elapsed() > Duration::from_secs(30) {
            let positions = consumer.position().expect("positions");
            let ends: Vec<_> = (0..PARTITIONS)
                .map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(10)))
                .collect();
            panic!("{topic}: nothing new for 30 s at {positions:?}, watermarks {ends:?} (a transaction left open?)");
        }
    }
}

/// Committed result records of `topic` and the sum of their counts (last field).
fn committed_counts(broker: &KafkaBroker, topic: &str) -> (u64, u64) {
    let (mut records, mut sum) = (0, 0);
    consume(
        &broker.bootstrap(),
        topic,
        &AtomicBool::new(false),
        false,
        |v, _| {
            records += 1;
            let line = String::from_utf8_lossy(v);
            sum += line
                .trim()
                .rsplit(',')
                .next()
                .and_then(|c| c.parse::<u64>().ok())
                .unwrap_or(0);
        },
    );
    (records, sum)
}

fn weir_manifest(
    work: &Path,
    name: &str,
    broker: &KafkaBroker,
    input: &str,
    output: &str,
    backend: &str,
    bounded: bool,
) -> PathBuf {
    let manifest = work.join(format!("{name}.yaml"));
    let b = broker.bootstrap();
    std::fs::write(
        &manifest,
        bids::window_job_yaml(
            name,
            &format!("kafka://{b}/{input}"),
            &format!("kafka://{b}/{output}"),
            backend,
            &work.join(format!("{name}-checkpoints")),
            if bounded {
                "      stoppingOffsets: latest\n"
            } else {
                ""
            },
        ),
    )
    .unwrap();
    manifest
}

/// A `kafka_flink.py` run with PyFlink's Python and the connector jar of `flink`.
fn flink_command(
    flink: &(PathBuf, PathBuf),
    mode: &str,
    broker: &KafkaBroker,
    input: &str,
    output: &str,
    backend: &str,
    work: &Path,
) -> Command {
    let (python, jar) = flink;
    let mut cmd = Command::new(python);
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/kafka_flink.py"))
        .args([
            "--mode",
            mode,
            "--bootstrap",
            &broker.bootstrap(),
            "--input",
            input,
            "--output",
            output,
            "--backend",
            backend,
            "--jar",
        ])
        .arg(jar)
        .arg("--checkpoints")
        .arg(work.join(format!("flink-{output}-checkpoints")));
    cmd
}

fn percentile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Runs a live job (started by `start`) over a fresh topic fed at `rate` records/s for
/// `seconds`; returns the latencies (ms) of the windows that closed while the producer ran,
/// sorted.
fn live_latencies(
    broker: &KafkaBroker,
    tag: &str,
    rate: u64,
    seconds: u64,
    start: impl FnOnce(&str, &str) -> Child,
) -> Vec<i64> {
    let (input, output) = (format!("live-in-{tag}"), format!("live-out-{tag}"));
    broker.create_topic(&input, PARTITIONS);
    broker.create_topic(&output, PARTITIONS);
    let mut child = start(&input, &output);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, bootstrap) = (stop.clone(), broker.bootstrap());
        let output = output.clone();
        std::thread::spawn(move || {
            let mut seen: Vec<(i64, i64)> = Vec::new();
            consume(&bootstrap, &output, &stop, true, |v, at| {
                let line = String::from_utf8_lossy(v);
                if let Some(end) = line.split(',').nth(2).and_then(parse_time) {
                    seen.push((end, at));
                }
            });
            seen
        })
    };
    // Both systems are reading before the first record (Flink's MiniCluster starts in ~10 s).
    std::thread::sleep(Duration::from_secs(20));
    let p = producer(broker);
    let begin = now_ms();
    let mut sent = 0u64;
    while now_ms() - begin < seconds as i64 * 1000 {
        let due = ((now_ms() - begin) as u64 * rate) / 1000;
        while sent < due {
            let ts = now_ms();
            let value = format!(
                "{},{},{},{}",
                sent % 10_000,
                sent % 1_000,
                sent % 997,
                format_time(ts)
            );
            send(&p, &input, (sent % PARTITIONS as u64) as i32, &value, ts);
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let end = now_ms();
    p.flush(Duration::from_secs(30)).expect("flush");
    // A trickle keeps watermarks moving past the last windows, each of which becomes visible
    // within 5 s (out-of-orderness) + one checkpoint (10 s) of its end.
    let keep_alive = Instant::now();
    while keep_alive.elapsed() < Duration::from_secs(20) {
        let ts = now_ms();
        for partition in 0..PARTITIONS {
            send(
                &p,
                &input,
                partition,
                &format!("0,0,0,{}", format_time(ts)),
                ts,
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let seen = reader.join().expect("reader");
    for pid in process_tree(child.id()).iter().rev() {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    let _ = child.wait();
    let mut latencies: Vec<i64> = seen
        .iter()
        .filter(|(window_end, _)| *window_end > begin + 10_000 && *window_end <= end)
        .map(|(window_end, at)| at - window_end)
        .collect();
    latencies.sort_unstable();
    latencies
}

fn main() {
    let rows = bids::rows_from_env(10_000_000);
    let backends: Vec<String> = env_or("WEIR_BENCH_BACKENDS", "heap,rocksdb".to_string())
        .split(',')
        .map(str::to_string)
        .collect();
    let flink_timeout = Duration::from_secs(env_or("WEIR_BENCH_FLINK_TIMEOUT", 900));
    let flink = flink_python().and_then(|py| Ok((py, connector_jar()?)));
    if let Err(why) = &flink {
        println!("Flink skipped: {why}");
    }
    let data = bids::cached(rows, PARTITIONS as u64);
    let work = tempfile::tempdir().expect("work dir");
    let broker = KafkaBroker::start();
    broker.create_topic("bids", PARTITIONS);
    let (loaded, load_s) = load(&broker, "bids", &data);
    assert_eq!(loaded, rows);
    println!(
        "loaded {rows} bids into 2 partitions in {load_s:.1} s ({:.0} records/s)\n",
        rows as f64 / load_s
    );

    println!("| system | backend | records/s | ratio Weir/Flink | wall s | peak RSS MiB | results | counted rows |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for backend in &backends {
        let output = format!("weir-{backend}");
        broker.create_topic(&output, PARTITIONS);
        let manifest = weir_manifest(
            work.path(),
            &format!("bench-kafka-{backend}"),
            &broker,
            "bids",
            &output,
            backend,
            true,
        );
        let (wall, s) = timed_run(&manifest, &work.path().join(format!("{output}.json")));
        assert_eq!(
            s["recordsIn"].as_u64(),
            Some(rows),
            "{backend}: not every row was read: {s}"
        );
        let weir_rps = rows as f64 / wall;
        let (results, counted) = committed_counts(&broker, &output);
        let flink_row = match &flink {
            Ok(f) => {
                let fout = format!("flink-{backend}");
                broker.create_topic(&fout, PARTITIONS);
                let cmd = flink_command(f, "bounded", &broker, "bids", &fout, backend, work.path());
                match run_watched(cmd, Limit::total(flink_timeout), work.path()) {
                    Watched::Exited(true, stdout, _, peak) => {
                        let secs = stdout
                            .lines()
                            .rev()
                            .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                            .and_then(|v| v["seconds"].as_f64())
                            .unwrap_or(f64::NAN);
                        let (fr, fc) = committed_counts(&broker, &fout);
                        Some((rows as f64 / secs, secs, peak as f64 / 1048576.0, fr, fc))
                    }
                    Watched::Exited(false, _, err, _) => {
                        println!(
                            "Flink {backend} failed: {}",
                            err.lines()
                                .rfind(|l| l.contains("Exception"))
                                .unwrap_or("(no exception line)")
                        );
                        None
                    }
                    Watched::TimedOut(..) => {
                        println!(
                            "Flink {backend} still running after {} s",
                            flink_timeout.as_secs()
                        );
                        None
                    }
                }
            }
            Err(_) => None,
        };
        let ratio = flink_row.map_or("—".to_string(), |(frps, ..)| {
            format!("{:.2}x", weir_rps / frps)
        });
        println!(
            "| Weir | {backend} | {weir_rps:.0} | {ratio} | {wall:.1} | {:.0} | {results} | {counted} |",
            s["peakRssBytes"].as_f64().unwrap_or(0.0) / 1048576.0
        );
        if let Some((frps, secs, peak, fr, fc)) = flink_row {
            println!(
                "| Flink 2.3 | {backend} | {frps:.0} | | {secs:.1} | {peak:.0} | {fr} | {fc} |"
            );
        }
    }

    if std::env::var("WEIR_BENCH_LIVE").as_deref() == Ok("0") {
        return;
    }
    let rate = env_or("WEIR_BENCH_LIVE_RATE", 50_000u64);
    let seconds = env_or("WEIR_BENCH_LIVE_SECONDS", 60u64);
    println!("\nlatency, {rate} records/s live for {seconds} s, RocksDB, visible (read_committed) - window end, ms:\n");
    println!("| system | windows | p50 | p99 | max |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let row = |name: &str, l: &[i64]| {
        println!(
            "| {name} | {} | {} | {} | {} |",
            l.len(),
            percentile(l, 0.5),
            percentile(l, 0.99),
            l.last().copied().unwrap_or(0)
        );
    };
    let weir = live_latencies(&broker, "weir", rate, seconds, |input, output| {
        let manifest = weir_manifest(
            work.path(),
            "bench-kafka-live",
            &broker,
            input,
            output,
            "rocksdb",
            false,
        );
        Command::new(weir_bin())
            .args(["run", "--fresh", "--progress-interval", "0s"])
            .arg(&manifest)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("weir run")
    });
    row("Weir", &weir);
    if let Ok(f) = &flink {
        let flink = live_latencies(&broker, "flink", rate, seconds, |input, output| {
            flink_command(f, "live", &broker, input, output, "rocksdb", work.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("flink")
        });
        row("Flink 2.3", &flink);
    }
}
