//! The SQL of user accounts and their login sessions. Same rules as `store/mod.rs`: portable SQL
//! (`$N` placeholders, TEXT and BIGINT).

use sqlx::Row as _;
use tether_proto::clock::unix_millis;

use crate::{domain::user::UserRecord, store::Backend, store::Store};

/// The PostgreSQL advisory lock under which a starting replica looks for users and creates the
/// first administrator (any constant distinct from the others; "admin" in ASCII).
const FIRST_ADMINISTRATOR_LOCK: i64 = 0x61_646d_696e;

/// A user, as listed (never the password hash).
#[derive(Debug, Clone)]
pub struct UserSummary {
    pub id: String,
    pub name: String,
    pub admin: bool,
    pub disabled: bool,
    /// Unix seconds.
    pub created_at: i64,
}

/// A user from a row with the `users` columns id, name, password_hash, admin and disabled.
pub(super) fn user_from_row(row: &sqlx::any::AnyRow) -> Result<UserRecord, sqlx::Error> {
    Ok(UserRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        password_hash: row.try_get("password_hash")?,
        admin: row.try_get::<i64, _>("admin")? != 0,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
    })
}

impl Store {
    /// Creates the user, or updates password and admin flag of an existing one. Returns true
    /// when the user was created.
    pub async fn upsert_user(&self, name: &str, password_hash: &str, admin: bool) -> anyhow::Result<bool> {
        let updated = sqlx::query("UPDATE users SET password_hash = $1, admin = $2 WHERE name = $3")
            .bind(password_hash)
            .bind(admin as i64)
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if updated > 0 {
            return Ok(false);
        }
        sqlx::query("INSERT INTO users (id, name, password_hash, admin, disabled, created_at) VALUES ($1, $2, $3, $4, 0, $5)")
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(name)
            .bind(password_hash)
            .bind(admin as i64)
            .bind(unix_millis())
            .execute(&self.pool)
            .await?;
        Ok(true)
    }

    /// Creates the administrator `admin` if there is no user at all, in one transaction; returns
    /// whether it did. Replicas starting together on one empty PostgreSQL database queue on a
    /// transaction-scoped advisory lock, so exactly one of them creates it (and prints its
    /// password); on SQLite, `BEGIN IMMEDIATE` takes the write lock before the count.
    pub async fn create_first_administrator(&self, password_hash: &str) -> anyhow::Result<bool> {
        let mut transaction = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => {
                let mut transaction = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(FIRST_ADMINISTRATOR_LOCK)
                    .execute(&mut *transaction)
                    .await?;
                transaction
            }
        };
        let users: i64 = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&mut *transaction)
            .await?
            .try_get("n")?;
        if users > 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO users (id, name, password_hash, admin, disabled, created_at) VALUES ($1, 'admin', $2, 1, 0, $3)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(password_hash)
        .bind(unix_millis())
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(true)
    }

    pub async fn count_users(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    pub async fn user_by_id(&self, id: &str) -> anyhow::Result<Option<UserRecord>> {
        let row = sqlx::query("SELECT id, name, password_hash, admin, disabled FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    pub async fn user_by_name(&self, name: &str) -> anyhow::Result<Option<UserRecord>> {
        let row = sqlx::query("SELECT id, name, password_hash, admin, disabled FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    pub async fn users(&self) -> anyhow::Result<Vec<UserSummary>> {
        let rows = sqlx::query("SELECT id, name, admin, disabled, created_at FROM users ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(UserSummary {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    admin: row.try_get::<i64, _>("admin")? != 0,
                    disabled: row.try_get::<i64, _>("disabled")? != 0,
                    created_at: row.try_get::<i64, _>("created_at")? / 1000,
                })
            })
            .collect()
    }

    pub async fn set_user_disabled(&self, user_id: &str, disabled: bool) -> anyhow::Result<()> {
        sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
            .bind(disabled as i64)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_password(&self, user_id: &str, password_hash: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- user sessions ----

    pub async fn create_session(
        &self,
        token_hash: &str,
        user_id: &str,
        expires_at: i64,
        client_address: &str,
        user_agent: Option<&str>,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO user_sessions (token_hash, user_id, created_at, expires_at, client_address, user_agent) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(unix_millis())
        .bind(expires_at)
        .bind(client_address)
        .bind(user_agent)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The user behind a live (unexpired) session of an enabled account.
    pub async fn session_user(&self, token_hash: &str) -> anyhow::Result<Option<UserRecord>> {
        let row = sqlx::query(
            "SELECT u.id, u.name, u.password_hash, u.admin, u.disabled FROM user_sessions s \
             JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled = 0",
        )
        .bind(token_hash)
        .bind(unix_millis())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    pub async fn delete_session(&self, token_hash: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM user_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_expired_sessions(&self) -> anyhow::Result<u64> {
        let done = sqlx::query("DELETE FROM user_sessions WHERE expires_at <= $1")
            .bind(unix_millis())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Deletes a user's login sessions, except `keep` (a token hash); returns how many.
    pub async fn delete_user_sessions(&self, user_id: &str, keep: Option<&str>) -> anyhow::Result<u64> {
        let done = sqlx::query("DELETE FROM user_sessions WHERE user_id = $1 AND token_hash <> $2")
            .bind(user_id)
            .bind(keep.unwrap_or(""))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
