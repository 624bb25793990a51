//! A query's output read as the suite's result table: what Flink's changelog of the same query
//! comes to once applied. Most queries append final rows; q4 appends each category's average
//! after every closed auction; q18 and q19 write upserts (see [`super::queries`]).

use std::collections::BTreeMap;

/// The result rows of `query` from its output `lines` in the order they were written
/// ([`crate::connectors::file_sink::committed_lines`]), sorted: for q4 each category's line
/// with the most auctions, without that count (`category,avg`); for q18 the last line per
/// (auction, bidder); for q19 the last line per (auction, rank_number); for the other queries
/// the lines themselves.
pub fn result_rows(query: &str, lines: &[String]) -> Vec<String> {
    let mut rows: Vec<String> = match query {
        "q4" => {
            let mut last: BTreeMap<&str, (u64, &str)> = BTreeMap::new();
            for line in lines {
                let mut f = line.splitn(3, ',');
                let (Some(category), Some(avg), Some(n)) = (f.next(), f.next(), f.next()) else {
                    continue;
                };
                let n = n.parse().unwrap_or(0);
                let e = last.entry(category).or_insert((0, avg));
                if n >= e.0 {
                    *e = (n, avg);
                }
            }
            last.iter()
                .map(|(c, (_, avg))| format!("{c},{avg}"))
                .collect()
        }
        "q18" => last_per_key(lines, |f| (f[0], f[1])),
        "q19" => last_per_key(lines, |f| (f[0], f[f.len() - 1])),
        _ => lines.to_vec(),
    };
    rows.sort();
    rows
}

fn last_per_key<'a>(
    lines: &'a [String],
    key: impl Fn(&[&'a str]) -> (&'a str, &'a str),
) -> Vec<String> {
    let mut last: BTreeMap<(&str, &str), &String> = BTreeMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        last.insert(key(&fields), line);
    }
    last.into_values().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn updates_come_to_the_last_row_per_key() {
        let q4 = lines(&["10,5,1", "11,7,1", "10,6,2"]);
        assert_eq!(result_rows("q4", &q4), ["10,6", "11,7"]);
        let q19 = lines(&["1,a,9,x,1", "1,b,8,x,2", "1,c,10,x,1", "1,a,9,x,2"]);
        assert_eq!(result_rows("q19", &q19), ["1,a,9,x,2", "1,c,10,x,1"]);
        let q18 = lines(&["1,2,5", "1,3,5", "1,2,6"]);
        assert_eq!(result_rows("q18", &q18), ["1,2,6", "1,3,5"]);
        assert_eq!(result_rows("q0", &lines(&["b", "a"])), ["a", "b"]);
    }
}
