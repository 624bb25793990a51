//! Runs a document's steps (see [`crate::console_doc`]) in one bash session, in order, and
//! checks each command's exit status and standard output against what the document shows.
//! Used by the quickstart test (the local steps) and the cluster test (the Kubernetes steps).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::console_doc::{output_matches, Step};

/// Marks the end of a command's output; followed by its exit status.
const END: &str = "\u{1e}doc-step-end ";

/// One bash session (`--noprofile --norc`) in a working directory, its standard error kept in
/// a file for failure messages.
pub struct DocSession {
    shell: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr_log: PathBuf,
    /// Longest any one command may take.
    step_timeout: Duration,
}

impl DocSession {
    /// Starts bash in `cwd` with `env` added to this process's environment (`RUST_LOG`
    /// removed, so the commands print what a user sees), standard error to `stderr_log`.
    pub fn start(
        cwd: &Path,
        env: &[(String, String)],
        stderr_log: &Path,
        step_timeout: Duration,
    ) -> Self {
        let mut shell = Command::new("bash")
            .args(["--noprofile", "--norc"])
            .current_dir(cwd)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(stderr_log).expect("stderr log"))
            .spawn()
            .expect("start bash");
        let stdin = shell.stdin.take();
        let stdout = shell.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        DocSession {
            shell,
            stdin,
            lines,
            stderr_log: stderr_log.to_path_buf(),
            step_timeout,
        }
    }

    /// Runs `steps` of the document at `doc` in order.
    ///
    /// # Panics
    /// At the first step that does not finish within the step timeout, exits with another
    /// status than the document gives, or prints other than the document shows; the message
    /// names the document's line, the command, the output and the tail of standard error,
    /// followed by `diagnostics()` (for example the cluster's state).
    pub fn run(&mut self, doc: &Path, steps: &[Step], diagnostics: &dyn Fn() -> String) {
        for step in steps {
            let at = format!("{}:{}", doc.display(), step.line);
            let stdin = self.stdin.as_mut().expect("session open");
            writeln!(stdin, "{}\nprintf '\\n{END}%s\\n' \"$?\"", step.command).expect("write");
            stdin.flush().expect("flush");
            let mut output = Vec::new();
            let status = loop {
                match self.lines.recv_timeout(self.step_timeout) {
                    Ok(line) => match line.strip_prefix(END) {
                        Some(code) => break code.parse::<i32>().expect("exit status"),
                        None => output.push(line),
                    },
                    Err(e) => {
                        let _ = self.shell.kill();
                        panic!(
                            "{at}: `{}` did not finish ({e}); its output so far:\n{}\nstderr:\n{}\n{}",
                            step.command,
                            output.join("\n"),
                            self.stderr_tail(),
                            diagnostics()
                        );
                    }
                }
            };
            // The marker's leading newline leaves one empty line after output that ended
            // with one.
            while output.last().is_some_and(|l| l.is_empty()) {
                output.pop();
            }
            if status != step.exit_status {
                let _ = self.shell.kill();
                panic!(
                    "{at}: `{}` exited with {status}, the document says {}; output:\n{}\nstderr:\n{}\n{}",
                    step.command,
                    step.exit_status,
                    output.join("\n"),
                    self.stderr_tail(),
                    diagnostics()
                );
            }
            if let Err(diff) = output_matches(&step.expected, &output) {
                let _ = self.shell.kill();
                panic!(
                    "{at}: `{}` printed other than the document shows:\n{diff}\nstderr:\n{}\n{}",
                    step.command,
                    self.stderr_tail(),
                    diagnostics()
                );
            }
        }
    }

    /// The last 30 lines the session wrote to standard error.
    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr_log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for DocSession {
    /// Closes bash's standard input and waits for it to exit.
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.shell.wait();
    }
}
