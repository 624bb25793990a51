//! A pod's volumes as directories under its state directory, and its containers' environment:
//! ConfigMap, Secret, downward-API, projected (the service-account token, the cluster's CA and
//! the namespace, as the ServiceAccount admission plugin adds them), emptyDir and hostPath
//! volumes; env values with `$(VAR)` references, Secret and ConfigMap keys, downward-API fields
//! (including `status.podIP`) and `envFrom`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, ObjectFieldSelector, Pod, Secret,
    ServiceAccount, Volume,
};
use kube::api::{Api, PostParams};
use kube::ResourceExt;

/// Where volumes and env values take keys from.
#[derive(Clone, Copy)]
enum Source {
    ConfigMap,
    Secret,
}

impl Source {
    fn kind(self) -> &'static str {
        match self {
            Source::ConfigMap => "configmap",
            Source::Secret => "secret",
        }
    }
}

/// Reads what a pod's volumes and environment refer to.
pub struct Resolver<'a> {
    /// Client of the agent.
    pub client: &'a kube::Client,
    /// The pod.
    pub pod: &'a Pod,
    /// The pod's address.
    pub pod_ip: &'a str,
    /// The node's address.
    pub host_ip: &'a str,
}

fn write_file(dir: &Path, rel: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, bytes).with_context(|| format!("write {}", path.display()))
}

/// The keys to write: `items` (key → path) or every key under its own name.
fn selected(
    all: BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    match items {
        None => Ok(all.into_iter().collect()),
        Some(items) => items
            .iter()
            .map(|i| {
                all.get(&i.key)
                    .map(|v| (i.path.clone(), v.clone()))
                    .ok_or_else(|| anyhow!("key {} not found", i.key))
            })
            .collect(),
    }
}

fn config_map_data(cm: ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    data.extend(
        cm.binary_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0)),
    );
    data
}

fn secret_data(s: Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = s
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    data.extend(
        s.string_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes())),
    );
    data
}

impl Resolver<'_> {
    fn namespace(&self) -> String {
        self.pod.namespace().unwrap_or_else(|| "default".into())
    }

    /// The data of ConfigMap or Secret `name` in the pod's namespace: `None` when it does
    /// not exist and `optional`; an error naming it when it does not exist otherwise.
    async fn data(
        &self,
        source: Source,
        name: &str,
        optional: Option<bool>,
    ) -> anyhow::Result<Option<BTreeMap<String, Vec<u8>>>> {
        let ns = self.namespace();
        let found = match source {
            Source::ConfigMap => Api::<ConfigMap>::namespaced(self.client.clone(), &ns)
                .get_opt(name)
                .await?
                .map(config_map_data),
            Source::Secret => Api::<Secret>::namespaced(self.client.clone(), &ns)
                .get_opt(name)
                .await?
                .map(secret_data),
        };
        match found {
            None if optional != Some(true) => bail!("{} {name:?} not found", source.kind()),
            other => Ok(other),
        }
    }

    /// Writes the selected keys of a ConfigMap or Secret into `dir`.
    async fn write_data(
        &self,
        dir: &Path,
        source: Source,
        name: &str,
        items: Option<&Vec<KeyToPath>>,
        optional: Option<bool>,
    ) -> anyhow::Result<()> {
        if let Some(data) = self.data(source, name, optional).await? {
            for (path, bytes) in selected(data, items)? {
                write_file(dir, &path, &bytes)?;
            }
        }
        Ok(())
    }

    /// A downward-API field: `metadata.name`, `metadata.namespace`, `metadata.uid`,
    /// `metadata.labels['k']`, `metadata.annotations['k']`, `metadata.labels`,
    /// `spec.nodeName`, `spec.serviceAccountName`, `status.podIP`, `status.podIPs`,
    /// `status.hostIP`, `status.hostIPs`.
    pub fn field(&self, sel: &ObjectFieldSelector) -> anyhow::Result<String> {
        let m = &self.pod.metadata;
        let path = sel.field_path.as_str();
        let keyed = |prefix: &str, map: &Option<BTreeMap<String, String>>| -> Option<String> {
            let key = path
                .strip_prefix(prefix)?
                .strip_prefix("['")?
                .strip_suffix("']")?;
            Some(
                map.as_ref()
                    .and_then(|m| m.get(key))
                    .cloned()
                    .unwrap_or_default(),
            )
        };
        let all = |map: &Option<BTreeMap<String, String>>| {
            map.iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v:?}\n"))
                .collect::<String>()
        };
        let spec = self.pod.spec.as_ref();
        Ok(match path {
            "metadata.name" => self.pod.name_any(),
            "metadata.namespace" => self.namespace(),
            "metadata.uid" => m.uid.clone().unwrap_or_default(),
            "metadata.labels" => all(&m.labels),
            "metadata.annotations" => all(&m.annotations),
            "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
            "spec.serviceAccountName" => spec
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_default(),
            "status.podIP" | "status.podIPs" => self.pod_ip.to_string(),
            "status.hostIP" | "status.hostIPs" => self.host_ip.to_string(),
            _ => keyed("metadata.labels", &m.labels)
                .or_else(|| keyed("metadata.annotations", &m.annotations))
                .ok_or_else(|| anyhow!("unsupported fieldRef {path}"))?,
        })
    }

    fn downward_files(&self, dir: &Path, items: &[DownwardAPIVolumeFile]) -> anyhow::Result<()> {
        for item in items {
            let sel = item
                .field_ref
                .as_ref()
                .context("downwardAPI resourceFieldRef is not supported")?;
            write_file(dir, &item.path, self.field(sel)?.as_bytes())?;
        }
        Ok(())
    }

    async fn token(
        &self,
        audience: Option<&str>,
        expiration: Option<i64>,
    ) -> anyhow::Result<String> {
        let sa = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &self.namespace());
        let request = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {
                "audiences": audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
                "expirationSeconds": expiration,
                "boundObjectRef": {
                    "apiVersion": "v1", "kind": "Pod",
                    "name": self.pod.name_any(), "uid": self.pod.metadata.uid,
                },
            },
        });
        let issued: serde_json::Value = api
            .create_subresource("token", &sa, &PostParams::default(), &request)
            .await
            .context("TokenRequest")?;
        issued["status"]["token"]
            .as_str()
            .map(str::to_string)
            .context("TokenRequest without a token")
    }

    /// Writes volume `v` into `dir`. Errors name what is missing (a ConfigMap, a Secret, a
    /// key) so the caller can report it and retry.
    pub async fn materialize(&self, v: &Volume, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        if v.empty_dir.is_some() || v.host_path.is_some() {
            return Ok(());
        }
        if let Some(cm) = &v.config_map {
            let items = cm.items.as_ref();
            return self
                .write_data(dir, Source::ConfigMap, &cm.name, items, cm.optional)
                .await;
        }
        if let Some(sec) = &v.secret {
            let name = sec.secret_name.clone().unwrap_or_default();
            let items = sec.items.as_ref();
            return self
                .write_data(dir, Source::Secret, &name, items, sec.optional)
                .await;
        }
        if let Some(d) = &v.downward_api {
            return self.downward_files(dir, d.items.as_deref().unwrap_or_default());
        }
        if let Some(p) = &v.projected {
            for source in p.sources.iter().flatten() {
                if let Some(t) = &source.service_account_token {
                    let token = self
                        .token(t.audience.as_deref(), t.expiration_seconds)
                        .await?;
                    write_file(dir, &t.path, token.as_bytes())?;
                }
                if let Some(cm) = &source.config_map {
                    let items = cm.items.as_ref();
                    self.write_data(dir, Source::ConfigMap, &cm.name, items, cm.optional)
                        .await?;
                }
                if let Some(sec) = &source.secret {
                    let items = sec.items.as_ref();
                    self.write_data(dir, Source::Secret, &sec.name, items, sec.optional)
                        .await?;
                }
                if let Some(d) = &source.downward_api {
                    self.downward_files(dir, d.items.as_deref().unwrap_or_default())?;
                }
            }
            return Ok(());
        }
        bail!("volume {:?}: only configMap, secret, downwardAPI, projected, emptyDir and hostPath volumes are supported", v.name)
    }

    /// The container's environment, in order: `envFrom`, then `env` (later entries win;
    /// `$(VAR)` in a value expands an earlier one).
    pub async fn env(&self, c: &Container) -> anyhow::Result<Vec<(String, String)>> {
        let mut env: Vec<(String, String)> = Vec::new();
        let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
            env.retain(|(n, _)| *n != k);
            env.push((k, v));
        };
        for from in c.env_from.iter().flatten() {
            let prefix = from.prefix.clone().unwrap_or_default();
            let found = if let Some(r) = &from.config_map_ref {
                self.data(Source::ConfigMap, &r.name, r.optional).await?
            } else if let Some(r) = &from.secret_ref {
                self.data(Source::Secret, &r.name, r.optional).await?
            } else {
                None
            };
            let Some(data) = found else { continue };
            for (k, v) in data {
                set(
                    &mut env,
                    format!("{prefix}{k}"),
                    String::from_utf8_lossy(&v).into_owned(),
                );
            }
        }
        for e in c.env.iter().flatten() {
            let value = if let Some(v) = &e.value {
                expand(v, &env)
            } else if let Some(from) = &e.value_from {
                if let Some(f) = &from.field_ref {
                    self.field(f)?
                } else if let Some((source, name, key, optional)) = from
                    .secret_key_ref
                    .as_ref()
                    .map(|r| (Source::Secret, &r.name, &r.key, r.optional))
                    .or(from
                        .config_map_key_ref
                        .as_ref()
                        .map(|r| (Source::ConfigMap, &r.name, &r.key, r.optional)))
                {
                    let data = self.data(source, name, optional).await?;
                    match data.and_then(|d| d.get(key).cloned()) {
                        Some(v) => String::from_utf8_lossy(&v).into_owned(),
                        None if optional == Some(true) => continue,
                        None => bail!(
                            "env {}: key {key:?} of {} {name:?} not found",
                            e.name,
                            source.kind()
                        ),
                    }
                } else {
                    bail!("env {}: resourceFieldRef is not supported", e.name)
                }
            } else {
                String::new()
            };
            set(&mut env, e.name.clone(), value);
        }
        Ok(env)
    }
}

/// Kubernetes' `$(VAR)` expansion: a reference to a defined variable is replaced, `$$` is a
/// literal `$`, anything else stays as written.
pub fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match env.iter().rev().find(|(k, _)| k == name) {
                        Some((_, v)) => out.push_str(v),
                        None => out.push_str(&format!("$({name})")),
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Host directory of volume `name` of a pod whose state lives in `pod_dir`, or the host path
/// of a hostPath volume.
pub fn volume_dir(pod_dir: &Path, v: &Volume) -> PathBuf {
    match &v.host_path {
        Some(h) => PathBuf::from(&h.path),
        None => pod_dir.join("volumes").join(&v.name),
    }
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let env = vec![("A".to_string(), "1".to_string())];
        assert_eq!(expand("x$(A)y", &env), "x1y");
        assert_eq!(expand("$(B)", &env), "$(B)");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("a$b", &env), "a$b");
    }
}
