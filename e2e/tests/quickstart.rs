//! `docs/quickstart.md`, run: the commands of its ```` ```console ```` blocks, extracted from the
//! document (format in `weir_e2e::console_doc`), in one bash session, in order, with this
//! build's `weir` first on `PATH`, from a directory laid out like a clone (`examples/` of this
//! repository, the shared data at `../shared/data`). Each command's standard output must match
//! what the document shows and its exit status what the document says, so the document fails
//! this test when the product changes under it.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use weir_e2e::console_doc::{output_matches, steps};
use weir_e2e::{repo_root, retail_data, weir_bin};

/// Marks the end of a command's output; followed by its exit status.
const END: &str = "\u{1e}quickstart-step-end ";
/// Longest any one documented command may take (the paced example runs about 11 s).
const STEP_TIMEOUT: Duration = Duration::from_secs(180);

#[test]
fn quickstart_commands_print_what_the_document_shows() {
    let doc_path = repo_root().join("docs/quickstart.md");
    let doc = std::fs::read_to_string(&doc_path).expect("read docs/quickstart.md");
    let steps = steps(&doc);
    assert!(
        steps.len() >= 10,
        "docs/quickstart.md has only {} steps",
        steps.len()
    );

    // A clone's layout: <dir>/weir/examples and <dir>/shared/data.
    let dir = tempfile::tempdir().expect("temp dir");
    let clone = dir.path().join("weir");
    std::fs::create_dir(&clone).expect("create clone dir");
    std::os::unix::fs::symlink(repo_root().join("examples"), clone.join("examples"))
        .expect("link examples");
    let shared = retail_data()
        .parent()
        .and_then(Path::parent)
        .expect("shared directory")
        .to_path_buf();
    std::os::unix::fs::symlink(&shared, dir.path().join("shared")).expect("link shared");
    // The document's jobs keep their state under /tmp/weir, as the README's example does.
    for job in ["retail-revenue", "quickstart"] {
        let _ = std::fs::remove_dir_all(format!("/tmp/weir/checkpoints/{job}"));
        let _ = std::fs::remove_dir_all(format!("/tmp/weir/output/{job}"));
    }

    let bin_dir = weir_bin().parent().expect("bin dir").to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let stderr_log = dir.path().join("stderr.log");
    let mut shell = Command::new("bash")
        .args(["--noprofile", "--norc"])
        .current_dir(&clone)
        .env("PATH", path)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_log).expect("stderr log"))
        .spawn()
        .expect("start bash");
    let mut stdin = shell.stdin.take().expect("stdin");
    let stdout = shell.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });

    for step in &steps {
        let at = format!("{}:{}", doc_path.display(), step.line);
        writeln!(stdin, "{}\nprintf '\\n{END}%s\\n' \"$?\"", step.command).expect("write");
        stdin.flush().expect("flush");
        let mut output = Vec::new();
        let status = loop {
            match rx.recv_timeout(STEP_TIMEOUT) {
                Ok(line) => match line.strip_prefix(END) {
                    Some(code) => break code.parse::<i32>().expect("exit status"),
                    None => output.push(line),
                },
                Err(e) => {
                    let _ = shell.kill();
                    panic!(
                        "{at}: `{}` did not finish ({e}); its output so far:\n{}\nstderr:\n{}",
                        step.command,
                        output.join("\n"),
                        tail(&stderr_log)
                    );
                }
            }
        };
        // The marker's leading newline leaves one empty line after output that ended with one.
        while output.last().is_some_and(|l| l.is_empty()) {
            output.pop();
        }
        assert_eq!(
            status,
            step.exit_status,
            "{at}: `{}` exited with {status}, the document says {}; output:\n{}\nstderr:\n{}",
            step.command,
            step.exit_status,
            output.join("\n"),
            tail(&stderr_log)
        );
        if let Err(diff) = output_matches(&step.expected, &output) {
            let _ = shell.kill();
            panic!(
                "{at}: `{}` printed other than the document shows:\n{diff}\nstderr:\n{}",
                step.command,
                tail(&stderr_log)
            );
        }
    }
    drop(stdin);
    let _ = shell.wait();
}

/// The last lines the session wrote to standard error (the jobs' logs), for failure messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
