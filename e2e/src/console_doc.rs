//! Documents whose examples are tested: the ```` ```console ```` blocks of a Markdown file (the
//! quickstart) as steps of a shell session, and the comparison of a step's expected output
//! with what the command printed. Pure functions; [`crate::doc_session`] runs the steps.
//!
//! A block's info string selects who runs it: ```` ```console ```` blocks run on one machine
//! (`tests/quickstart.rs`), ```` ```console kubernetes ```` blocks against a cluster (the
//! cluster test); a Markdown renderer highlights both as `console`.
//!
//! Block format (the same conventions as the `trycmd` crate, so a reader recognises them):
//! - `$ command` starts a step; a command continues on the next line after a trailing `\`.
//! - A trailing comment `# exit status N` on the command says the command ends with status N
//!   (0 otherwise).
//! - The lines up to the next `$ ` or the end of the block are the command's standard output.
//!   In them `[..]` stands for any text within one line (times, rates, generated names) and a
//!   line `...` for any number of lines.

/// One command of a document and the standard output it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Line number (1-based) of the `$ ` line in the document.
    pub line: usize,
    /// The shell command, continuation lines joined.
    pub command: String,
    /// The exit status the document gives (`# exit status N`), else 0.
    pub exit_status: i32,
    /// The expected standard output, line by line, with `[..]` and `...` wildcards.
    pub expected: Vec<String>,
}

/// The steps of every block of `markdown` whose info string is exactly `info` (for example
/// `console`, or `console kubernetes`), in order.
pub fn steps(markdown: &str, info: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut in_block = false;
    let mut continuing = false;
    for (i, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_end();
        if !in_block {
            in_block = trimmed.strip_prefix("```") == Some(info);
            continue;
        }
        if trimmed == "```" {
            in_block = false;
            continuing = false;
            continue;
        }
        if continuing {
            let step = steps.last_mut().expect("a continued command has a step");
            continuing = trimmed.ends_with('\\');
            step.command.push('\n');
            step.command.push_str(trimmed);
            if !continuing {
                step.exit_status = exit_status(&step.command);
            }
        } else if let Some(command) = trimmed.strip_prefix("$ ") {
            continuing = command.ends_with('\\');
            steps.push(Step {
                line: i + 1,
                command: command.to_string(),
                exit_status: exit_status(command),
                expected: Vec::new(),
            });
        } else if let Some(step) = steps.last_mut() {
            step.expected.push(trimmed.to_string());
        }
    }
    steps
}

/// N of a trailing `# exit status N` comment, else 0.
fn exit_status(command: &str) -> i32 {
    command
        .rsplit_once("# exit status ")
        .and_then(|(_, n)| n.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Whether `actual` (a line of output) matches `expected`, where `[..]` matches any text.
pub fn line_matches(expected: &str, actual: &str) -> bool {
    let parts: Vec<&str> = expected.split("[..]").collect();
    if parts.len() == 1 {
        return expected == actual;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !actual.starts_with(first) || actual.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &actual[first.len()..];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Checks `actual` output lines against `expected` (with `[..]` and `...`).
///
/// # Errors
/// A message naming the first expected line that no actual line matches, with the output.
pub fn output_matches(expected: &[String], actual: &[String]) -> Result<(), String> {
    if matches_from(expected, actual) {
        Ok(())
    } else {
        Err(format!(
            "expected:\n{}\nactual:\n{}",
            expected.join("\n"),
            actual.join("\n")
        ))
    }
}

fn matches_from(expected: &[String], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((e, rest)) if e == "..." => {
            (0..=actual.len()).any(|skip| matches_from(rest, &actual[skip..]))
        }
        Some((e, rest)) => match actual.split_first() {
            Some((a, actual_rest)) => line_matches(e, a) && matches_from(rest, actual_rest),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &[&str]) -> Vec<String> {
        s.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn parses_steps_of_console_blocks_only() {
        let doc = "intro\n```sh\n$ not run\n```\n```console\n$ echo a \\\n  b\na b\n$ false  # exit status 1\n```\ntext\n```console\n$ true\n```\n```console kubernetes\n$ kubectl get sj\nNAME\n```\n";
        let s = steps(doc, "console");
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].command, "echo a \\\n  b");
        assert_eq!(s[0].line, 6);
        assert_eq!(s[0].expected, lines(&["a b"]));
        assert_eq!(s[1].exit_status, 1);
        assert!(s[1].expected.is_empty());
        assert_eq!(s[2].command, "true");
        let k = steps(doc, "console kubernetes");
        assert_eq!(k.len(), 1);
        assert_eq!(k[0].command, "kubectl get sj");
        assert_eq!(k[0].expected, lines(&["NAME"]));
    }

    #[test]
    fn wildcards_match_within_a_line_and_across_lines() {
        assert!(line_matches("records in:  541909", "records in:  541909"));
        assert!(!line_matches("records in:  541909", "records in:  541908"));
        assert!(line_matches("took [..] ms", "took 95 ms"));
        assert!(line_matches("[..]", ""));
        assert!(line_matches("a[..]b[..]c", "a-x-b-y-c"));
        assert!(!line_matches("a[..]b[..]c", "a-x-c"));
        assert!(!line_matches("ab[..]ba", "aba"));
        let expected = lines(&["first", "...", "last"]);
        assert!(output_matches(&expected, &lines(&["first", "x", "y", "last"])).is_ok());
        assert!(output_matches(&expected, &lines(&["first", "last"])).is_ok());
        assert!(output_matches(&expected, &lines(&["first", "x"])).is_err());
        assert!(output_matches(&lines(&["a"]), &lines(&["a", "b"])).is_err());
    }
}
