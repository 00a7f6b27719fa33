//! API tokens: `wdn_<id>_<secret>`. The store keeps only the secret's SHA-256 (the secret
//! is 32 random bytes, so a fast hash is enough: there is nothing to brute-force), the
//! role and a name. Every request reads its token from the store, so a revocation takes
//! effect at once on every appliance.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;
use warden_store::{now_unix_ms, StateStore, StoreError};

const KIND: &str = "token";
const PREFIX: &str = "wdn_";

/// What a token may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read everything except tokens and the audit log.
    Viewer,
    /// Also run actions: wake, sleep, archive, restore, restart, migrate.
    Operator,
    /// Also create, change and delete servers, manage tokens, read the audit log.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// A token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_unix_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    info: TokenInfo,
    secret_sha256: String,
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// `bytes` random bytes as hex (token ids and secrets, action ids).
pub fn random_hex(bytes: usize) -> Result<String, StoreError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)
        .map_err(|e| StoreError::Backend(format!("no randomness for a token: {e}")))?;
    Ok(hex::encode(buf))
}

/// Checks a token name: 1-64 printable characters.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err("name: use 1-64 printable characters".into());
    }
    Ok(())
}

/// Creates a token; returns it and the full secret (shown once, never stored).
pub async fn create(
    store: &dyn StateStore,
    role: Role,
    name: &str,
) -> Result<(TokenInfo, String), StoreError> {
    check_name(name).map_err(StoreError::Invalid)?;
    let id = random_hex(6)?;
    let secret = random_hex(32)?;
    let info = TokenInfo {
        id: id.clone(),
        name: name.to_string(),
        role,
        created_unix_ms: now_unix_ms(),
    };
    let stored = Stored {
        info: info.clone(),
        secret_sha256: digest(&secret),
    };
    let json = serde_json::to_string(&stored)
        .map_err(|e| StoreError::Backend(format!("encoding a token: {e}")))?;
    store.put_doc(KIND, &id, &json, true).await?;
    Ok((info, format!("{PREFIX}{id}_{secret}")))
}

pub async fn list(store: &dyn StateStore) -> Result<Vec<TokenInfo>, StoreError> {
    let mut out = Vec::new();
    for (_, json) in store.list_docs(KIND).await? {
        if let Ok(s) = serde_json::from_str::<Stored>(&json) {
            out.push(s.info);
        }
    }
    Ok(out)
}

pub async fn revoke(store: &dyn StateStore, id: &str) -> Result<bool, StoreError> {
    store.delete_doc(KIND, id).await
}

/// Whether the token `id` still exists (is not revoked).
pub async fn exists(store: &dyn StateStore, id: &str) -> Result<bool, StoreError> {
    Ok(store.get_doc(KIND, id).await?.is_some())
}

/// The token's record if `presented` is a live token; None for anything else.
pub async fn verify(
    store: &dyn StateStore,
    presented: &str,
) -> Result<Option<TokenInfo>, StoreError> {
    let Some((id, secret)) = presented
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('_'))
    else {
        return Ok(None);
    };
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let Some(json) = store.get_doc(KIND, id).await? else {
        return Ok(None);
    };
    let Ok(stored) = serde_json::from_str::<Stored>(&json) else {
        return Ok(None);
    };
    let ok: bool = digest(secret)
        .as_bytes()
        .ct_eq(stored.secret_sha256.as_bytes())
        .into();
    Ok(ok.then_some(stored.info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_store::Documents;

    #[tokio::test]
    async fn tokens_verify_until_revoked_and_forgeries_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = warden_store::EmbeddedStore::open(dir.path()).await.unwrap();
        let (info, secret) = create(&store, Role::Operator, "bot").await.unwrap();
        assert_eq!(verify(&store, &secret).await.unwrap(), Some(info.clone()));
        // Another last digit (replacing it with a fixed one was the secret itself 1 time in 16).
        let last = if secret.ends_with('0') { '1' } else { '0' };
        let forged = format!("{}{last}", &secret[..secret.len() - 1]);
        assert_eq!(verify(&store, &forged).await.unwrap(), None);
        for junk in ["", "wdn_", "wdn__", "Bearer x", "wdn_zz_abc"] {
            assert_eq!(verify(&store, junk).await.unwrap(), None, "{junk}");
        }
        let stored = store.get_doc(KIND, &info.id).await.unwrap().unwrap();
        assert!(
            !stored.contains(&secret[secret.len() - 64..]),
            "only the hash is stored"
        );
        assert!(revoke(&store, &info.id).await.unwrap());
        assert_eq!(verify(&store, &secret).await.unwrap(), None);
    }
}
