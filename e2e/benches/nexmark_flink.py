"""Runs one Nexmark query on Apache Flink (PyFlink, Flink SQL, local MiniCluster) over the files
`weir nexmark generate` writes, for the side-by-side benchmark `e2e/benches/nexmark.rs`.

The SQL follows the Nexmark SQL of the Nexmark benchmark suite for Flink, over the suite's
generator table read from a file instead (`events.json`: every event in order, event type and one
of person, auction and bid; event time `dateTime` with a 4 s bounded out-of-orderness watermark)
and the suite's three views of it (person, auction, bid), so that every query reads all events. Where the suite
needs something PyFlink does not ship, the query says what stands in:
q13 joins the side input with a regular join (the filesystem connector is not a lookup source),
q14 counts the `c`s with built-in string functions (the suite uses a Java UDF).

Modes:
  throughput  runs the query into a blackhole sink (q10: a partitioned CSV filesystem sink, as
              the suite) with exactly-once checkpoints; prints JSON {"submitted": true} when it
              submits the job and {"seconds": submit to finish} when the job is done
  result      writes the query's changelog (Debezium JSON files), applies it (an `after` adds
              a row, a `before` removes one; for updating results, which Flink may write as
              upserts, an `after` replaces the row of its key) and writes the final rows to --out, one per line,
              sorted, columns joined by commas (timestamps `YYYY-MM-DD HH:MM:SS.mmm`; q10
              `dt=../hm=..|row`)
"""

import argparse
import collections
import datetime
import decimal
import json
import pathlib
import re
import sys
import time

from pyflink.table import EnvironmentSettings, TableEnvironment

TABLES = {
    "person": "id BIGINT, name STRING, emailAddress STRING, creditCard STRING, city STRING, "
    "state STRING, dateTime TIMESTAMP(3), extra STRING",
    "auction": "id BIGINT, itemName STRING, description STRING, initialBid BIGINT, "
    "reserve BIGINT, dateTime TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, "
    "category BIGINT, extra STRING",
    "bid": "auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, "
    "dateTime TIMESTAMP(3), extra STRING",
}

RANKS = """
    count(*) AS total_bids,
    count(*) FILTER (WHERE price < 10000) AS rank1_bids,
    count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids,
    count(*) FILTER (WHERE price >= 1000000) AS rank3_bids"""

DISTINCT = """,
    count(DISTINCT bidder) AS total_bidders,
    count(DISTINCT bidder) FILTER (WHERE price < 10000) AS rank1_bidders,
    count(DISTINCT bidder) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bidders,
    count(DISTINCT bidder) FILTER (WHERE price >= 1000000) AS rank3_bidders,
    count(DISTINCT auction) AS total_auctions,
    count(DISTINCT auction) FILTER (WHERE price < 10000) AS rank1_auctions,
    count(DISTINCT auction) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_auctions,
    count(DISTINCT auction) FILTER (WHERE price >= 1000000) AS rank3_auctions"""

HOP = "TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND))"
CHANNEL_ID = "REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2)"

QUERIES = {
    "q0": "SELECT auction, bidder, price, dateTime, extra FROM bid",
    "q1": "SELECT auction, bidder, 0.908 * price AS price, dateTime, extra FROM bid",
    "q2": "SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0",
    "q3": """SELECT P.name, P.city, P.state, A.id
        FROM auction AS A INNER JOIN person AS P ON A.seller = P.id
        WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA')""",
    "q4": """SELECT Q.category, AVG(Q.final) FROM (
            SELECT MAX(B.price) AS final, A.category
            FROM auction A, bid B
            WHERE A.id = B.auction AND B.dateTime BETWEEN A.dateTime AND A.expires
            GROUP BY A.id, A.category) Q
        GROUP BY Q.category""",
    "q5": f"""SELECT AuctionBids.auction, AuctionBids.num FROM (
            SELECT auction, count(*) AS num, window_start AS starttime, window_end AS endtime
            FROM {HOP} GROUP BY auction, window_start, window_end) AS AuctionBids
        JOIN (
            SELECT max(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime FROM (
                SELECT count(*) AS num, window_start AS starttime, window_end AS endtime
                FROM {HOP} GROUP BY auction, window_start, window_end) AS CountBids
            GROUP BY CountBids.starttime, CountBids.endtime) AS MaxBids
        ON AuctionBids.starttime = MaxBids.starttime AND AuctionBids.endtime = MaxBids.endtime
           AND AuctionBids.num >= MaxBids.maxn""",
    "q7": """SELECT B.auction, B.bidder, B.price, B.dateTime, B.extra
        FROM bid B JOIN (
            SELECT MAX(price) AS maxprice, window_end AS dateTime
            FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
            GROUP BY window_start, window_end) B1
        ON B.price = B1.maxprice
        WHERE B.dateTime BETWEEN B1.dateTime - INTERVAL '10' SECOND AND B1.dateTime""",
    "q8": """SELECT P.id, P.name, P.starttime FROM (
            SELECT id, name, window_start AS starttime, window_end AS endtime
            FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
            GROUP BY id, name, window_start, window_end) P
        JOIN (
            SELECT seller, window_start AS starttime, window_end AS endtime
            FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
            GROUP BY seller, window_start, window_end) A
        ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime""",
    "q9": """SELECT id, itemName, description, initialBid, reserve, dateTime, expires, seller,
            category, extra, auction, bidder, price, bid_dateTime, bid_extra
        FROM (
            SELECT A.*, B.auction, B.bidder, B.price, B.dateTime AS bid_dateTime,
                B.extra AS bid_extra,
                ROW_NUMBER() OVER (PARTITION BY A.id ORDER BY B.price DESC, B.dateTime ASC)
                    AS rownum
            FROM auction A, bid B
            WHERE A.id = B.auction AND B.dateTime BETWEEN A.dateTime AND A.expires)
        WHERE rownum <= 1""",
    "q10": """SELECT auction, bidder, price, dateTime, extra,
            DATE_FORMAT(dateTime, 'yyyy-MM-dd') AS dt, DATE_FORMAT(dateTime, 'HH:mm') AS hm
        FROM bid""",
    "q11": """SELECT B.bidder, count(*) AS bid_count,
            SESSION_START(B.dateTime, INTERVAL '10' SECOND) AS starttime,
            SESSION_END(B.dateTime, INTERVAL '10' SECOND) AS endtime
        FROM bid B GROUP BY B.bidder, SESSION(B.dateTime, INTERVAL '10' SECOND)""",
    "q12": """SELECT bidder, count(*) AS bid_count, window_start, window_end
        FROM TABLE(TUMBLE(TABLE bid_proctime, DESCRIPTOR(p_time), INTERVAL '10' SECOND))
        GROUP BY bidder, window_start, window_end""",
    "q13": """SELECT B.auction, B.bidder, B.price, B.dateTime, S.`value`
        FROM bid B JOIN side_input S ON MOD(B.auction, 10000) = S.key""",
    "q14": """SELECT auction, bidder, 0.908 * price AS price,
            CASE WHEN HOUR(dateTime) >= 8 AND HOUR(dateTime) <= 18 THEN 'dayTime'
                 WHEN HOUR(dateTime) <= 6 OR HOUR(dateTime) >= 20 THEN 'nightTime'
                 ELSE 'otherTime' END AS bidTimeType,
            dateTime, extra, CHAR_LENGTH(extra) - CHAR_LENGTH(REPLACE(extra, 'c', '')) AS c_counts
        FROM bid WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000""",
    "q15": f"""SELECT DATE_FORMAT(dateTime, 'yyyy-MM-dd') AS `day`, {RANKS}{DISTINCT}
        FROM bid GROUP BY DATE_FORMAT(dateTime, 'yyyy-MM-dd')""",
    "q16": f"""SELECT channel, DATE_FORMAT(dateTime, 'yyyy-MM-dd') AS `day`,
            max(DATE_FORMAT(dateTime, 'HH:mm')) AS `minute`, {RANKS}{DISTINCT}
        FROM bid GROUP BY channel, DATE_FORMAT(dateTime, 'yyyy-MM-dd')""",
    "q17": f"""SELECT auction, DATE_FORMAT(dateTime, 'yyyy-MM-dd') AS `day`, {RANKS},
            min(price) AS min_price, max(price) AS max_price, avg(price) AS avg_price,
            sum(price) AS sum_price
        FROM bid GROUP BY auction, DATE_FORMAT(dateTime, 'yyyy-MM-dd')""",
    "q18": """SELECT auction, bidder, price, channel, url, dateTime, extra FROM (
            SELECT *, ROW_NUMBER() OVER (PARTITION BY bidder, auction ORDER BY dateTime DESC)
                AS rank_number
            FROM bid)
        WHERE rank_number <= 1""",
    "q19": """SELECT auction, bidder, price, channel, url, dateTime, extra, rank_number FROM (
            SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC)
                AS rank_number
            FROM bid)
        WHERE rank_number <= 10""",
    "q20": """SELECT auction, bidder, price, channel, url, B.dateTime, B.extra,
            itemName, description, initialBid, reserve, A.dateTime, expires, seller, category,
            A.extra
        FROM bid AS B INNER JOIN auction AS A ON B.auction = A.id
        WHERE A.category = 10""",
    "q21": f"""SELECT auction, bidder, price, channel,
            CASE WHEN lower(channel) = 'apple' THEN '0'
                 WHEN lower(channel) = 'google' THEN '1'
                 WHEN lower(channel) = 'facebook' THEN '2'
                 WHEN lower(channel) = 'baidu' THEN '3'
                 ELSE {CHANNEL_ID} END AS channel_id
        FROM bid
        WHERE {CHANNEL_ID} IS NOT NULL
           OR lower(channel) IN ('apple', 'google', 'facebook', 'baidu')""",
    "q22": """SELECT auction, bidder, price, channel, SPLIT_INDEX(url, '/', 3) AS dir1,
            SPLIT_INDEX(url, '/', 4) AS dir2, SPLIT_INDEX(url, '/', 5) AS dir3
        FROM bid""",
}


def quoted(sql):
    """`sql` with the column `dateTime` quoted (Flink 2 reserves DATETIME)."""
    return re.sub(r"(?<![`\w])dateTime(?![`\w])", "`dateTime`", sql)


def environment(args):
    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = env.get_config()
    conf.set("parallelism.default", str(args.parallelism))
    conf.set("execution.checkpointing.interval", "10s")
    conf.set("execution.checkpointing.mode", "EXACTLY_ONCE")
    conf.set("execution.checkpointing.dir", "file://" + args.checkpoints)
    conf.set("state.backend.type", "rocksdb" if args.backend == "rocksdb" else "hashmap")
    conf.set("execution.checkpointing.incremental", "true")
    # The suite's generator table, over every event in order, and its three views.
    rows = ", ".join(f"{name} ROW<{columns}>" for name, columns in TABLES.items())
    env.execute_sql(
        quoted(
            f"""CREATE TABLE events (event_type INT, {rows},
                dateTime AS CASE WHEN event_type = 0 THEN person.dateTime
                                 WHEN event_type = 1 THEN auction.dateTime
                                 ELSE bid.dateTime END,
                WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
            ) WITH ('connector' = 'filesystem', 'path' = 'file://{args.data}/events.json',
                    'format' = 'json')"""
        )
    )
    for event_type, (name, columns) in enumerate(TABLES.items()):
        fields = ", ".join(
            "dateTime" if c.split()[0] == "dateTime" else f"{name}.{c.split()[0]} AS {c.split()[0]}"
            for c in columns.split(", ")
        )
        env.execute_sql(
            quoted(
                f"CREATE TEMPORARY VIEW {name} AS SELECT {fields} FROM events "
                f"WHERE event_type = {event_type}"
            )
        )
    env.execute_sql(
        "CREATE TEMPORARY VIEW bid_proctime AS SELECT *, PROCTIME() AS p_time FROM bid"
    )
    env.execute_sql(
        f"""CREATE TABLE side_input (key BIGINT, `value` STRING)
            WITH ('connector' = 'filesystem', 'path' = 'file://{args.data}/side_input.csv',
                  'format' = 'csv')"""
    )
    return env


def throughput(env, args):
    select = quoted(QUERIES[args.query])
    if args.query == "q10":
        env.execute_sql(
            f"""CREATE TABLE sink (auction BIGINT, bidder BIGINT, price BIGINT,
                    `dateTime` TIMESTAMP(3), extra STRING, dt STRING, hm STRING)
                PARTITIONED BY (dt, hm)
                WITH ('connector' = 'filesystem', 'path' = 'file://{args.out}', 'format' = 'csv',
                      'sink.partition-commit.policy.kind' = 'success-file')"""
        )
    else:
        env.execute_sql(
            f"CREATE TABLE sink ({sink_columns(env, select)}) WITH ('connector' = 'blackhole')"
        )
    # The bench measures (and caps) the run from this line on.
    print(json.dumps({"submitted": True}), flush=True)
    started = time.monotonic()
    env.execute_sql(f"INSERT INTO sink {select}").wait()
    return {"seconds": time.monotonic() - started}


# Columns (by position) that identify a row of an updating result: Flink may write such a
# result as upserts (a new row for a key without retracting the old one).
UPSERT_KEYS = {
    "q4": [0],
    "q9": [0],
    "q15": [0],
    "q16": [0, 1],
    "q17": [0, 1],
    "q18": [0, 1],
    "q19": [0, 7],
}


def part_order(path):
    """Sort key of Flink's part files `part-<uuid>-<subtask>-<count>`: in writing order."""
    fields = path.name.rsplit("-", 2)
    try:
        return (str(path.parent), int(fields[1]), int(fields[2]))
    except (IndexError, ValueError):
        return (str(path.parent), -1, -1)


def schema(env, select):
    """[(name, SQL type)] of the query's result (time attributes as plain timestamps)."""
    text = str(env.sql_query(select).get_resolved_schema())
    columns = []
    for line in text.splitlines():
        m = re.match(r"\s*`([^`]+)` (.+?)(?: \*\w+\*)?,?$", line)
        if m:
            columns.append((m.group(1), m.group(2)))
    return columns


def sink_columns(env, select):
    return ", ".join(f"`{n}` {t}" for n, t in schema(env, select))


def json_cell(v, kind):
    """A value of Flink's JSON encoding as the benchmark's text: timestamps with 3 decimals."""
    if v is None:
        return ""
    if kind.startswith("TIMESTAMP"):
        t = datetime.datetime.fromisoformat(v.replace("T", " ").rstrip("Z"))
        return t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return str(v)


def result(env, args):
    select = quoted(QUERIES[args.query])
    columns = schema(env, select)
    changelog = args.out + ".changelog"
    env.execute_sql(
        f"""CREATE TABLE sink ({sink_columns(env, select)})
            WITH ('connector' = 'filesystem', 'path' = 'file://{changelog}',
                  'format' = 'debezium-json',
                  'debezium-json.encode.decimal-as-plain-number' = 'true')"""
    )
    env.execute_sql(f"INSERT INTO sink {select}").wait()
    rows = collections.Counter()
    upserts = {}
    keys = UPSERT_KEYS.get(args.query)
    files = [p for p in pathlib.Path(changelog).rglob("*") if p.is_file()]
    for path in sorted(files, key=part_order):
        if path.name.startswith("."):
            continue
        for text in path.read_text().splitlines():
            change = json.loads(text, parse_float=decimal.Decimal)
            for side, sign in (("before", -1), ("after", 1)):
                row = change.get(side)
                if row is None:
                    continue
                fields = [json_cell(row[n], k) for n, k in columns]
                if args.query == "q10":
                    line = f"dt={fields[5]}/hm={fields[6]}|" + ",".join(fields[:5])
                else:
                    line = ",".join(fields)
                if keys is None:
                    rows[line] += sign
                elif sign > 0:
                    upserts[tuple(fields[i] for i in keys)] = line
                else:
                    upserts.pop(tuple(fields[i] for i in keys), None)
    if keys is not None:
        rows = collections.Counter(upserts.values())
    lines = sorted(line for line, n in rows.items() for _ in range(max(n, 0)))
    with open(args.out, "w") as f:
        f.writelines(line + "\n" for line in lines)
    return {"rows": len(lines)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=["throughput", "result"], required=True)
    p.add_argument("--query", choices=sorted(QUERIES), required=True)
    p.add_argument("--data", required=True, help="directory of `weir nexmark generate`")
    p.add_argument("--backend", choices=["heap", "rocksdb"], default="heap")
    p.add_argument("--parallelism", type=int, default=2)
    p.add_argument("--checkpoints", required=True, help="checkpoint directory")
    p.add_argument("--out", required=True, help="result file (result) or q10's sink directory")
    args = p.parse_args()
    env = environment(args)
    report = throughput(env, args) if args.mode == "throughput" else result(env, args)
    json.dump(report, sys.stdout)
    print()


if __name__ == "__main__":
    main()
