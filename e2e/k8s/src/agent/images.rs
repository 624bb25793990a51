//! The node agent's image table: what an image reference means on this machine, in place of
//! pulling and unpacking it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One image: its entry point and command (as in its Dockerfile), the host binaries that
/// stand for the image's executables, and host files that appear at their paths inside the
/// image.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// The image's `ENTRYPOINT`, used when a container sets no `command`.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// The image's `CMD`, used when a container sets neither `command` nor `args`.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// Executables of the image (by path inside the image, or by file name) and the host
    /// binary that runs for each.
    #[serde(default)]
    pub binaries: BTreeMap<String, PathBuf>,
    /// Files of the image (path inside the image) and the host file bind-mounted there.
    #[serde(default)]
    pub files: BTreeMap<String, PathBuf>,
}

/// Image reference (`repository:tag`) to image.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Images(pub BTreeMap<String, Image>);

impl Images {
    /// Reads the table from a YAML file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        Ok(serde_yaml::from_str(&text)?)
    }

    /// The image a container names, if the table has it.
    pub fn get(&self, reference: &str) -> Option<&Image> {
        self.0.get(reference)
    }
}

impl Image {
    /// The argv of a container of this image, Kubernetes' rules: `command` replaces the
    /// entry point and drops `CMD`; `args` replaces `CMD`. The first element is resolved to a
    /// host binary through [`Image::binaries`] (by full path, then by file name).
    pub fn argv(&self, command: Option<&[String]>, args: Option<&[String]>) -> Vec<String> {
        let mut argv: Vec<String> = match (command, args) {
            (Some(c), Some(a)) => c.iter().chain(a).cloned().collect(),
            (Some(c), None) => c.to_vec(),
            (None, Some(a)) => self.entrypoint.iter().chain(a).cloned().collect(),
            (None, None) => self.entrypoint.iter().chain(&self.cmd).cloned().collect(),
        };
        if let Some(first) = argv.first_mut() {
            let name = first.rsplit('/').next().unwrap_or(first).to_string();
            if let Some(host) = self
                .binaries
                .get(first.as_str())
                .or(self.binaries.get(&name))
            {
                *first = host.display().to_string();
            }
        }
        argv
    }
}
