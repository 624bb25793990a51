//! I/O: each StreamJob's admin token. The operator creates the Secret `<name>-admin-token`
//! (owned by the StreamJob) with a fresh token before the job's first pods, keeps the tokens
//! it knows by UID, and reads a Secret back when it does not know one (after its own restart).

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use tracing::{info, warn};
use weir_api_types::AdminToken;

use crate::build::{admin_token_of, build_admin_token_secret, Target};
use crate::error::Error;
use crate::names;

/// The admin tokens the operator knows, by StreamJob UID.
#[derive(Default)]
pub struct AdminTokens(Mutex<HashMap<String, AdminToken>>);

impl AdminTokens {
    fn get(&self, uid: &str) -> Option<AdminToken> {
        self.0
            .lock()
            .expect("invariant: not poisoned")
            .get(uid)
            .cloned()
    }

    fn insert(&self, uid: &str, token: AdminToken) {
        self.0
            .lock()
            .expect("invariant: not poisoned")
            .insert(uid.to_string(), token);
    }

    /// Forgets the token of a StreamJob that is gone.
    pub fn forget(&self, uid: &str) {
        self.0.lock().expect("invariant: not poisoned").remove(uid);
    }
}

/// True when `secret` belongs to the StreamJob with UID `uid` (a Secret of a deleted
/// StreamJob of the same name may linger until garbage collection).
fn owned_by(secret: &Secret, uid: &str) -> bool {
    secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid)
}

/// The Secrets API of `target`'s namespace, the name of its token Secret, and that Secret if
/// it exists.
async fn read_secret(
    client: &kube::Client,
    target: &Target,
) -> Result<(Api<Secret>, String, Option<Secret>), Error> {
    let name = names::admin_token_secret(&target.name);
    let api: Api<Secret> = Api::namespaced(client.clone(), &target.namespace);
    let secret = api
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get Secret {name}")))?;
    Ok((api, name, secret))
}

/// The token of the StreamJob `target`: known, else read from its Secret; `None` when it has no
/// Secret of its own (pods deployed before admin tokens existed, whose coordinator requires
/// none).
///
/// # Errors
/// [`Error::Kube`] when the Secret cannot be read.
pub async fn fetch_admin_token(
    client: &kube::Client,
    target: &Target,
    tokens: &AdminTokens,
) -> Result<Option<AdminToken>, Error> {
    if let Some(t) = tokens.get(&target.uid) {
        return Ok(Some(t));
    }
    let (_, _, secret) = read_secret(client, target).await?;
    let token = secret
        .filter(|s| owned_by(s, &target.uid))
        .as_ref()
        .and_then(admin_token_of);
    if let Some(t) = &token {
        tokens.insert(&target.uid, t.clone());
    }
    Ok(token)
}

/// Makes sure the StreamJob `target` has its admin token Secret, creating it with a new token
/// when it is missing (and replacing one left by a deleted StreamJob of the same name, or
/// edited into something that is no token), and returns the token.
///
/// # Errors
/// [`Error::Kube`] when the Secret cannot be read, deleted or created.
pub async fn ensure_admin_token(
    client: &kube::Client,
    target: &Target,
    tokens: &AdminTokens,
) -> Result<AdminToken, Error> {
    let (api, name, existing) = read_secret(client, target).await?;
    if let Some(secret) = existing {
        match admin_token_of(&secret) {
            Some(t) if owned_by(&secret, &target.uid) => {
                tokens.insert(&target.uid, t.clone());
                return Ok(t);
            }
            _ => {
                warn!(
                    namespace = %target.namespace,
                    secret = %name,
                    "the admin token Secret belongs to another StreamJob or holds no token; replacing it"
                );
                api.delete(&name, &DeleteParams::default())
                    .await
                    .map_err(Error::kube(format!("delete Secret {name}")))?;
            }
        }
    }
    let token = tokens.get(&target.uid).unwrap_or_else(AdminToken::generate);
    let secret = build_admin_token_secret(target, &token);
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            info!(namespace = %target.namespace, secret = %name, "created the job's admin token")
        }
        // Created meanwhile (another reconcile of a restarted operator): read that one.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let stored = api
                .get(&name)
                .await
                .map_err(Error::kube(format!("get Secret {name}")))?;
            if let Some(t) = admin_token_of(&stored) {
                tokens.insert(&target.uid, t.clone());
                return Ok(t);
            }
        }
        Err(e) => return Err(Error::kube(format!("create Secret {name}"))(e)),
    }
    tokens.insert(&target.uid, token.clone());
    Ok(token)
}
