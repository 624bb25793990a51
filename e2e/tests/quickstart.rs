//! `docs/quickstart.md`, run: the commands of its ```` ```console ```` blocks, extracted from
//! the document (format in `weir_e2e::console_doc`), in one bash session
//! (`weir_e2e::doc_session`), in order, with this build's `weir` first on `PATH`, from a
//! directory laid out like a clone (`examples/` of this repository, the shared data at
//! `../shared/data`). Each command's standard output must match what the document shows and
//! its exit status what the document says, so the document fails this test when the product
//! changes under it. The Kubernetes step's ```` ```console kubernetes ```` block is run by the
//! cluster test (`e2e/k8s/tests/operator_on_k8s.rs`).

use std::path::Path;
use std::time::Duration;

use weir_e2e::console_doc::steps;
use weir_e2e::doc_session::DocSession;
use weir_e2e::{repo_root, retail_data, weir_bin};

/// Longest any one documented command may take (the paced example runs about 11 s).
const STEP_TIMEOUT: Duration = Duration::from_secs(180);

#[test]
fn quickstart_commands_print_what_the_document_shows() {
    let doc_path = repo_root().join("docs/quickstart.md");
    let doc = std::fs::read_to_string(&doc_path).expect("read docs/quickstart.md");
    let steps = steps(&doc, "console");
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
    let mut session = DocSession::start(
        &clone,
        &[("PATH".to_string(), path)],
        &dir.path().join("stderr.log"),
        STEP_TIMEOUT,
    );
    session.run(&doc_path, &steps, &String::new);
}
