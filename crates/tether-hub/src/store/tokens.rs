//! The SQL of personal access tokens: creating, listing, checking and revoking them, and
//! withdrawing them with their account. Disabling a user revokes every token of theirs for good
//! (`revoked_at` is set), so enabling the account again does not bring them back: the owner makes
//! new ones. Same rules as `store/mod.rs`: portable SQL.

use sqlx::Row as _;
use tether_proto::clock::unix_millis;

use crate::{domain::user::UserRecord, store::Store, store::users::user_from_row};

/// A personal access token, as listed (never the token itself).
#[derive(Debug, Clone)]
pub struct AccessTokenRecord {
    pub id: String,
    pub name: String,
    pub permissions: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked: bool,
}

impl Store {
    /// The user, token id and permissions behind a live access token.
    pub async fn access_token_user(
        &self,
        token_hash: &str,
    ) -> anyhow::Result<Option<(UserRecord, String, String)>> {
        let now = unix_millis();
        let row = sqlx::query(
            "SELECT u.id, u.name, u.password_hash, u.admin, u.disabled, t.id AS token_id, t.permissions \
             FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > $2 AND u.disabled = 0",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let token_id: String = row.try_get("token_id")?;
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&token_id)
            .execute(&self.pool)
            .await?;
        Ok(Some((
            user_from_row(&row)?,
            token_id,
            row.try_get("permissions")?,
        )))
    }

    pub async fn create_access_token(
        &self,
        id: &str,
        user_id: &str,
        name: &str,
        token_hash: &str,
        permissions: &str,
        expires_at: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, token_hash, permissions, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(user_id)
        .bind(name)
        .bind(token_hash)
        .bind(permissions)
        .bind(unix_millis())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn access_tokens(&self, user_id: &str) -> anyhow::Result<Vec<AccessTokenRecord>> {
        let rows = sqlx::query(
            "SELECT id, name, permissions, created_at, expires_at, last_used_at, revoked_at FROM api_tokens \
             WHERE user_id = $1 ORDER BY created_at",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let permissions: String = row.try_get("permissions")?;
                Ok(AccessTokenRecord {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    permissions: permissions
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    created_at: row.try_get::<i64, _>("created_at")? / 1000,
                    expires_at: row.try_get::<i64, _>("expires_at")? / 1000,
                    last_used_at: row.try_get::<Option<i64>, _>("last_used_at")?.map(|t| t / 1000),
                    revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
                })
            })
            .collect()
    }

    /// Whether a token is unrevoked, unexpired and its user enabled.
    pub async fn access_token_active(&self, id: &str) -> anyhow::Result<bool> {
        let row = sqlx::query(
            "SELECT t.id FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.id = $1 AND t.revoked_at IS NULL AND t.expires_at > $2 AND u.disabled = 0",
        )
        .bind(id)
        .bind(unix_millis())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// The owner of a token, if it exists.
    pub async fn access_token_owner(&self, id: &str) -> anyhow::Result<Option<String>> {
        let row = sqlx::query("SELECT user_id FROM api_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get("user_id")).transpose()?)
    }

    pub async fn revoke_access_token(&self, id: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(unix_millis())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

impl Store {
    /// Disables an account and revokes its tokens, in one transaction; returns the ids of the
    /// tokens revoked now.
    pub async fn disable_user(&self, user_id: &str) -> anyhow::Result<Vec<String>> {
        let now = unix_millis();
        let mut transaction = self.pool.begin().await?;
        sqlx::query("UPDATE users SET disabled = 1 WHERE id = $1")
            .bind(user_id)
            .execute(&mut *transaction)
            .await?;
        let rows = sqlx::query("SELECT id FROM api_tokens WHERE user_id = $1 AND revoked_at IS NULL")
            .bind(user_id)
            .fetch_all(&mut *transaction)
            .await?;
        let ids = rows
            .iter()
            .map(|row| row.try_get::<String, _>("id"))
            .collect::<Result<Vec<_>, _>>()?;
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(user_id)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(ids)
    }

    /// Revokes the tokens of accounts that are disabled (disabled by a hub older than
    /// [`Store::disable_user`], whose tokens only slept); returns how many. Run at start.
    pub async fn revoke_tokens_of_disabled_users(&self) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE revoked_at IS NULL \
             AND user_id IN (SELECT id FROM users WHERE disabled = 1)",
        )
        .bind(unix_millis())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
