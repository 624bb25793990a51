//! `csv-window-aggregate` on CSV files other than the retail data: no header with listed
//! columns, quoted fields with commas, empty fields, timestamps with and without
//! milliseconds, a compound key, every aggregate, late records; a gzip file with a header,
//! another delimiter and a strftime timestamp format; and a directory of files over the same
//! time range, each file a split with its own watermark.

use std::io::Write;

use weir_e2e::{assert_success, read_output};

fn manifest(dir: &std::path::Path, args: &[(&str, &str)]) -> std::path::PathBuf {
    let mut text = format!(
        "apiVersion: weir.dev/v1alpha1\nkind: StreamJob\nmetadata:\n  name: csv-test\nspec:\n  job:\n    entry: csv-window-aggregate\n    parallelism: 1\n    args:\n      output: {}\n",
        dir.join("out").display()
    );
    for (k, v) in args {
        text.push_str(&format!(
            "      {k}: {}\n",
            serde_json::to_string(v).unwrap()
        ));
    }
    text.push_str(&format!(
        "  checkpointing:\n    interval: 100ms\n    storage: file://{}\n  stateBackend: heap\n",
        dir.join("ckpt").display()
    ));
    let path = dir.join("job.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(manifest: &std::path::Path, dir: &std::path::Path) -> serde_json::Value {
    let summary = dir.join("summary.json");
    let out = std::process::Command::new(weir_e2e::weir_bin())
        .arg("run")
        .arg(manifest)
        .arg("--summary-json")
        .arg(&summary)
        .output()
        .unwrap();
    assert_success(&out);
    serde_json::from_slice(&std::fs::read(summary).unwrap()).unwrap()
}

#[test]
fn headerless_quoted_empty_and_millisecond_fields() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from(
        "1,eu,\"Widget, large\",2.5,2024-01-01 00:00:00.100\n\
         2,eu,\"Widget, large\",,2024-01-01 00:00:00.900\n\
         3,us,Gadget,4,2024-01-01 00:00:01\n\
         4,eu,\"Widget, large\",1.5,2024-01-01 00:00:01.500\n\
         5,us,Gadget,6,2024-01-01 00:00:03.250\n",
    );
    // Enough rows to move the watermark past 00:00:04 in an earlier batch than the late row
    // (one subtask: with several, when a watermark takes effect depends on thread timing).
    for i in 0..1500 {
        csv.push_str(&format!(
            "{},zz,filler,1,2024-01-01 00:00:{:02}.{:03}\n",
            6 + i,
            10 + i / 1000,
            i % 1000
        ));
    }
    csv.push_str("9999,us,Gadget,100,2024-01-01 00:00:03.500\n");
    std::fs::write(dir.path().join("in.csv"), csv).unwrap();
    let input = dir.path().join("in.csv").display().to_string();
    let m = manifest(
        dir.path(),
        &[
            ("input", &input),
            ("header", "false"),
            ("columns", "id,region,name,amount,ts"),
            ("timestamp", "ts"),
            ("key", "region,name"),
            ("value", "amount"),
            ("window", "1s"),
            ("aggregates", "count,sum,min,max,avg"),
            ("outOfOrderness", "1s"),
        ],
    );
    let summary = run(&m, dir.path());
    assert_eq!(summary["recordsIn"], 1506);
    assert_eq!(
        summary["lateRecords"], 1,
        "the row for a fired window is late"
    );
    let mut expected = vec![
        "eu,\"Widget, large\",2024-01-01 00:00:00,2024-01-01 00:00:01,2,2.5,2.5,2.5,2.5",
        "eu,\"Widget, large\",2024-01-01 00:00:01,2024-01-01 00:00:02,1,1.5,1.5,1.5,1.5",
        "us,Gadget,2024-01-01 00:00:01,2024-01-01 00:00:02,1,4,4,4,4",
        "us,Gadget,2024-01-01 00:00:03,2024-01-01 00:00:04,1,6,6,6,6",
        "zz,filler,2024-01-01 00:00:10,2024-01-01 00:00:11,1000,1000,1,1,1",
        "zz,filler,2024-01-01 00:00:11,2024-01-01 00:00:12,500,500,1,1,1",
    ];
    expected.sort();
    assert_eq!(read_output(&dir.path().join("out")), expected);
}

#[test]
fn gzip_with_header_delimiter_and_strftime_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sales.csv.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(
        b"when;store;qty\n01/12/2010 08:26;A;3\n01/12/2010 08:59;A;\n01/12/2010 09:10;B;2.5\n",
    )
    .unwrap();
    gz.finish().unwrap();
    let input = path.display().to_string();
    let m = manifest(
        dir.path(),
        &[
            ("input", &input),
            ("delimiter", ";"),
            ("timestamp", "when"),
            ("timestampFormat", "%d/%m/%Y %H:%M"),
            ("key", "store"),
            ("value", "qty"),
            ("window", "1h"),
            ("aggregates", "count,sum"),
        ],
    );
    let summary = run(&m, dir.path());
    assert_eq!(summary["recordsIn"], 3);
    assert_eq!(
        read_output(&dir.path().join("out")),
        vec![
            "A,2010-12-01 08:00:00,2010-12-01 09:00:00,2,3",
            "B,2010-12-01 09:00:00,2010-12-01 10:00:00,1,2.5",
        ]
    );
}

#[test]
fn files_of_one_subtask_are_splits_with_their_own_watermarks() {
    // Two files over the same hour, one subtask: read one after the other with one
    // watermark, the second file would be entirely late; as splits in turns, each holds the
    // watermark back for itself and nothing is late.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let mut expected: std::collections::BTreeMap<(String, u32), u64> = Default::default();
    for (f, store) in ["a", "b"].iter().enumerate() {
        let mut csv = String::from("store,qty,ts\n");
        for i in 0..5_000u32 {
            let (min, sec) = (i / 100 % 60, i % 60);
            csv.push_str(&format!("{store},1,2024-01-01 00:{min:02}:{sec:02}\n"));
            *expected.entry((store.to_string(), min)).or_default() += 1;
        }
        std::fs::write(input.join(format!("part-{f}.csv")), csv).unwrap();
    }
    let input = input.display().to_string();
    let m = manifest(
        dir.path(),
        &[
            ("input", &input),
            ("timestamp", "ts"),
            ("key", "store"),
            ("value", "qty"),
            ("window", "1m"),
            ("aggregates", "count"),
            ("outOfOrderness", "0s"),
        ],
    );
    let summary = run(&m, dir.path());
    assert_eq!(summary["recordsIn"], 10_000);
    assert_eq!(summary["lateRecords"], 0, "{summary}");
    let lines = read_output(&dir.path().join("out"));
    let counted: u64 = lines
        .iter()
        .map(|l| l.rsplit(',').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(counted, 10_000);
    assert_eq!(lines.len(), expected.len());
}

#[test]
fn records_that_do_not_parse_are_counted_and_set_aside_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "k,v,ts\n\
               a,1,2024-01-01 00:00:01\n\
               a,oops,2024-01-01 00:00:02\n\
               b,2,yesterday\n\
               b,3,2024-01-01 00:00:03\n\
               a,4,2024-01-01 00:00:04\n\
               c,5,\n";
    let input = dir.path().join("in.csv");
    std::fs::write(&input, csv).unwrap();
    let dead = dir.path().join("dead.jsonl");
    let m = manifest(
        dir.path(),
        &[
            ("input", input.to_str().unwrap()),
            ("timestamp", "ts"),
            ("key", "k"),
            ("value", "v"),
            ("window", "10s"),
            ("aggregates", "count,sum"),
            ("deadLetterFile", dead.to_str().unwrap()),
        ],
    );
    let summary = run(&m, dir.path());
    assert_eq!(summary["invalidRecords"], 3, "{summary}");
    assert_eq!(summary["recordsIn"], 3, "{summary}");
    assert_eq!(
        read_output(&dir.path().join("out")),
        vec![
            "a,2024-01-01 00:00:00,2024-01-01 00:00:10,2,5",
            "b,2024-01-01 00:00:00,2024-01-01 00:00:10,1,3",
        ]
    );
    // Subtask 0's dead letters: each bad record with its line and what is wrong.
    let letters: Vec<serde_json::Value> = std::fs::read_to_string(format!("{}.0", dead.display()))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lines: Vec<u64> = letters
        .iter()
        .map(|l| l["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![3, 4, 7], "{letters:?}");
    assert!(
        letters[0]["error"].as_str().unwrap().contains("oops"),
        "{letters:?}"
    );
    assert!(
        letters[1]["error"].as_str().unwrap().contains("timestamp"),
        "{letters:?}"
    );
    assert_eq!(letters[2]["fields"], serde_json::json!(["c", "5", ""]));
}
