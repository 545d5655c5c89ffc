//! Callers from their credentials: the principal behind a login session or an access token,
//! and whether a live connection's credential still holds.

use crate::{
    domain::principal::Credential, domain::principal::Principal, domain::roles::parse_permissions,
    domain::tokens::ACCESS_TOKEN_PREFIX, domain::tokens::hash_token, store::Store,
};

impl Store {
    /// Whether `principal`'s credential is still good (for a connection that may have missed a
    /// revocation).
    pub async fn still_valid(&self, principal: &Principal) -> anyhow::Result<bool> {
        Ok(match principal {
            Principal::User {
                credential: Credential::Session { token_hash },
                ..
            } => self
                .session_user(token_hash)
                .await?
                .is_some_and(|user| !user.disabled),
            Principal::User {
                credential: Credential::Token { id, .. },
                ..
            } => self.access_token_active(id).await?,
            Principal::Device { .. } => true,
        })
    }

    /// The user behind a login session token or a personal access token (`ttp_` prefix).
    pub async fn principal_for_token(&self, token: &str) -> anyhow::Result<Option<Principal>> {
        let token_hash = hash_token(token);
        if token.starts_with(ACCESS_TOKEN_PREFIX) {
            let Some((user, id, names)) = self.access_token_user(&token_hash).await? else {
                return Ok(None);
            };
            let permissions = parse_permissions(&names);
            let grants = self.grants(&user).await?;
            return Ok(Some(Principal::User {
                user,
                credential: Credential::Token { id, permissions },
                grants,
            }));
        }
        let Some(user) = self.session_user(&token_hash).await? else {
            return Ok(None);
        };
        let grants = self.grants(&user).await?;
        Ok(Some(Principal::User {
            user,
            credential: Credential::Session { token_hash },
            grants,
        }))
    }

    /// The same caller with their account and grants read again (after a [`Revocation::Access`]);
    /// `None` when the credential no longer works.
    pub async fn reload_principal(&self, principal: &Principal) -> anyhow::Result<Option<Principal>> {
        let Principal::User { user, credential, .. } = principal else {
            return Ok(Some(principal.clone()));
        };
        if !self.still_valid(principal).await? {
            return Ok(None);
        }
        let Some(user) = self.user_by_id(&user.id).await? else {
            return Ok(None);
        };
        let grants = self.grants(&user).await?;
        Ok(Some(Principal::User {
            user,
            credential: credential.clone(),
            grants,
        }))
    }
}
