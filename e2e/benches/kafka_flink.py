"""Kafka -> 10 s tumbling event-time window, count per auction -> Kafka on Apache Flink 2.3
(PyFlink, Flink SQL, local MiniCluster, the Kafka SQL connector jar given with --jar), exactly
once, for the side-by-side benchmark `e2e/benches/kafka.rs`.

Input records: CSV values `auction,bidder,price,ts` (ts `YYYY-MM-DD HH:MM:SS.mmm`, UTC), event
time from `ts` with a 5 s bounded out-of-orderness watermark, as Weir's job. Output records: CSV
values `auction,window_start,window_end,count`, in Kafka transactions committed on checkpoints
(every 10 s, or --interval).

Modes:
  bounded  reads the input topic from the earliest to the latest offset at start, then ends;
           prints JSON {"seconds": submit to finish}
  live     reads the input topic from its earliest offset until killed
"""

import argparse
import json
import time

from pyflink.table import EnvironmentSettings, TableEnvironment


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["bounded", "live"], required=True)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--jar", required=True)
    p.add_argument("--backend", choices=["heap", "rocksdb"], default="rocksdb")
    p.add_argument("--checkpoints", required=True)
    p.add_argument("--interval", default="10s")
    p.add_argument("--parallelism", type=int, default=2)
    args = p.parse_args()

    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = env.get_config()
    conf.set("pipeline.jars", "file://" + args.jar)
    conf.set("parallelism.default", str(args.parallelism))
    conf.set("execution.checkpointing.interval", args.interval)
    conf.set("execution.checkpointing.mode", "EXACTLY_ONCE")
    conf.set("execution.checkpointing.dir", "file://" + args.checkpoints)
    conf.set("state.backend.type", "rocksdb" if args.backend == "rocksdb" else "hashmap")
    conf.set("execution.checkpointing.incremental", "true")
    bounded = "'scan.bounded.mode' = 'latest-offset'," if args.mode == "bounded" else ""
    env.execute_sql(
        f"""CREATE TABLE bids (auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP(3),
            WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
        ) WITH ('connector' = 'kafka', 'topic' = '{args.input}',
                'properties.bootstrap.servers' = '{args.bootstrap}',
                'properties.group.id' = 'flink-bench-{args.input}',
                'scan.startup.mode' = 'earliest-offset', {bounded}
                'format' = 'csv')"""
    )
    env.execute_sql(
        f"""CREATE TABLE results (auction BIGINT, window_start STRING, window_end STRING,
            cnt BIGINT
        ) WITH ('connector' = 'kafka', 'topic' = '{args.output}',
                'properties.bootstrap.servers' = '{args.bootstrap}',
                'properties.transaction.timeout.ms' = '900000',
                'sink.delivery-guarantee' = 'exactly-once',
                'sink.transactional-id-prefix' = 'flink-bench-{args.output}-{int(time.time())}',
                'format' = 'csv')"""
    )
    started = time.time()
    env.execute_sql(
        """INSERT INTO results
        SELECT auction, CAST(window_start AS STRING), CAST(window_end AS STRING), COUNT(*)
        FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' SECOND))
        GROUP BY auction, window_start, window_end"""
    ).wait()
    print(json.dumps({"seconds": time.time() - started}))


if __name__ == "__main__":
    main()
