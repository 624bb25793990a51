//! The Secret holding a job's admin token: created once per StreamJob (owned by it, so it goes
//! with it), never rewritten, mounted by the coordinator and the workers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use weir_api_types::{AdminToken, ADMIN_TOKEN_KEY};

use super::Target;
use crate::names;

/// Secret `<name>-admin-token` (immutable, type `Opaque`) holding `token` under key `token`.
pub fn build_admin_token_secret(target: &Target, token: &AdminToken) -> Secret {
    Secret {
        metadata: target.metadata(names::admin_token_secret(&target.name), "coordinator"),
        data: Some(BTreeMap::from([(
            ADMIN_TOKEN_KEY.to_string(),
            ByteString(token.expose().as_bytes().to_vec()),
        )])),
        immutable: Some(true),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

/// The token a Secret [`build_admin_token_secret`] built holds; `None` when the key is missing
/// or malformed (someone edited the Secret).
pub fn admin_token_of(secret: &Secret) -> Option<AdminToken> {
    let bytes = secret.data.as_ref()?.get(ADMIN_TOKEN_KEY)?;
    AdminToken::parse(std::str::from_utf8(&bytes.0).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_holds_the_token_and_belongs_to_the_stream_job() {
        let target = Target {
            name: "orders".into(),
            namespace: "team-a".into(),
            uid: "u-1".into(),
            default_image: "weir:dev".into(),
        };
        let token = AdminToken::generate();
        let secret = build_admin_token_secret(&target, &token);
        assert_eq!(secret.metadata.name.as_deref(), Some("orders-admin-token"));
        assert_eq!(secret.metadata.owner_references.unwrap()[0].uid, "u-1");
        assert_eq!(secret.immutable, Some(true));
        assert_eq!(
            admin_token_of(&build_admin_token_secret(&target, &token)),
            Some(token)
        );
    }
}
