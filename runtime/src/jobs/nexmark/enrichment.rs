//! q13 (bids joined with a bounded side input) and q20's line (bids expanded with their
//! auction, for auctions in category 10; the join is [`super::lookup_join::LookupJoin`]).

use std::collections::HashMap;
use std::path::Path;

use super::model::{sql_timestamp, Auction, Bid};
use super::ranking::bid_columns;

/// Rows of the side input `weir nexmark generate` writes (`side_input.csv`): keys 0 to 9,999,
/// which q13 matches against `auction % 10000`.
pub const SIDE_INPUT_ROWS: u64 = 10_000;

/// q13's side input: `key -> value`.
pub type SideInput = HashMap<u64, String>;

/// The value of row `key` in the generated side input.
pub fn side_input_value(key: u64) -> String {
    format!("side-{key:04}")
}

/// The generated side input (what `side_input.csv` holds).
pub fn default_side_input() -> SideInput {
    (0..SIDE_INPUT_ROWS)
        .map(|k| (k, side_input_value(k)))
        .collect()
}

/// Reads a side input file: CSV lines `key,value` (`key` an unsigned integer; the value is the
/// rest of the line).
///
/// # Errors
/// A message naming the file and line that cannot be read or does not parse.
pub fn read_side_input(path: &Path) -> Result<SideInput, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let (key, value) = line
                .split_once(',')
                .and_then(|(k, v)| Some((k.trim().parse::<u64>().ok()?, v)))
                .ok_or_else(|| {
                    format!(
                        "{}:{}: expected `key,value` with an unsigned integer key, got `{line}`",
                        path.display(),
                        i + 1
                    )
                })?;
            Ok((key, value.to_string()))
        })
        .collect()
}

/// q13's line for `bid` joined with `value`: `auction,bidder,price,dateTime,value`.
pub fn q13_line(bid: &Bid, value: &str) -> String {
    format!(
        "{},{},{},{},{value}",
        bid.auction,
        bid.bidder,
        bid.price,
        sql_timestamp(bid.date_time)
    )
}

/// q20's line: the bid's columns, then the auction's (`itemName, description, initialBid,
/// reserve, dateTime, expires, seller, category, extra`).
pub fn q20_line(bid: &Bid, a: &Auction) -> String {
    format!(
        "{},{},{},{},{},{},{},{},{},{}",
        bid_columns(bid),
        a.item_name,
        a.description,
        a.initial_bid,
        a.reserve,
        sql_timestamp(a.date_time),
        sql_timestamp(a.expires),
        a.seller,
        a.category,
        a.extra
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_input_files_parse_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.csv");
        std::fs::write(&good, "1,a,b\n\n2,c\n").unwrap();
        let table = read_side_input(&good).unwrap();
        assert_eq!(table[&1], "a,b");
        assert_eq!(table[&2], "c");
        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, "1,a\nx,b\n").unwrap();
        let err = read_side_input(&bad).unwrap_err();
        assert!(err.contains("bad.csv:2"), "{err}");
    }
}
