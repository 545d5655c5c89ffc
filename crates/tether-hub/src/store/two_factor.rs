//! The SQL of the second factor (TOTP secrets, used steps, recovery codes) and of the hub's
//! settings, among them the one that requires a second factor of everyone. Same rules as
//! `store/mod.rs`: portable SQL.

use sqlx::Row as _;
use tether_proto::clock::unix_millis;

use crate::{domain::user::UserRecord, store::Store};

/// A user's second factor, as stored.
#[derive(Debug, Clone, Default)]
pub struct TwoFactor {
    /// The base32 secret (present from enrolment on, enabled or not).
    pub secret: Option<String>,
    pub enabled: bool,
    /// The time step of the last accepted code.
    pub last_step: i64,
}

/// The setting that makes every user enrol a second factor.
pub const REQUIRE_TWO_FACTOR: &str = "require_two_factor";

impl Store {
    // ---- two-factor authentication ----

    pub async fn two_factor(&self, user_id: &str) -> anyhow::Result<TwoFactor> {
        let row = sqlx::query("SELECT totp_secret, totp_enabled, totp_last_step FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(TwoFactor::default());
        };
        Ok(TwoFactor {
            secret: row.try_get("totp_secret")?,
            enabled: row.try_get::<i64, _>("totp_enabled")? != 0,
            last_step: row.try_get("totp_last_step")?,
        })
    }

    /// Starts an enrolment: a new secret (sealed, see `secret_box.rs`), not yet enabled.
    pub async fn set_two_factor_secret(&self, user_id: &str, secret: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE users SET totp_secret = $1, totp_enabled = 0, totp_last_step = 0 WHERE id = $2")
            .bind(secret)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Enables the second factor with fresh recovery codes (their hashes).
    pub async fn enable_two_factor(
        &self,
        user_id: &str,
        step: i64,
        recovery_hashes: &[String],
    ) -> anyhow::Result<()> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query("UPDATE users SET totp_enabled = 1, totp_last_step = $1 WHERE id = $2")
            .bind(step)
            .bind(user_id)
            .execute(&mut *transaction)
            .await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *transaction)
            .await?;
        for hash in recovery_hashes {
            sqlx::query("INSERT INTO recovery_codes (code_hash, user_id, created_at) VALUES ($1, $2, $3)")
                .bind(hash)
                .bind(user_id)
                .bind(unix_millis())
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    pub async fn disable_two_factor(&self, user_id: &str) -> anyhow::Result<()> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query(
            "UPDATE users SET totp_secret = NULL, totp_enabled = 0, totp_last_step = 0 WHERE id = $1",
        )
        .bind(user_id)
        .execute(&mut *transaction)
        .await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Every stored TOTP secret, as stored: (user id, user name, secret).
    pub async fn two_factor_secrets(&self) -> anyhow::Result<Vec<(String, String, String)>> {
        let rows = sqlx::query("SELECT id, name, totp_secret FROM users WHERE totp_secret IS NOT NULL")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("id")?,
                    row.try_get("name")?,
                    row.try_get("totp_secret")?,
                ))
            })
            .collect()
    }

    /// Replaces a stored TOTP secret by another form of it, unless it changed meanwhile.
    pub async fn replace_two_factor_secret(
        &self,
        user_id: &str,
        old: &str,
        new: &str,
    ) -> anyhow::Result<bool> {
        let done = sqlx::query("UPDATE users SET totp_secret = $1 WHERE id = $2 AND totp_secret = $3")
            .bind(new)
            .bind(user_id)
            .bind(old)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records `step` as used, atomically: false when it (or a later one) was used already, so
    /// two logins racing with one code cannot both pass.
    pub async fn accept_two_factor_step(&self, user_id: &str, step: i64) -> anyhow::Result<bool> {
        let done = sqlx::query("UPDATE users SET totp_last_step = $1 WHERE id = $2 AND totp_last_step < $1")
            .bind(step)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Uses a recovery code (by hash) once; false when unknown or used.
    pub async fn use_recovery_code(&self, user_id: &str, code_hash: &str) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 WHERE code_hash = $2 AND user_id = $3 AND used_at IS NULL",
        )
        .bind(unix_millis())
        .bind(code_hash)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- settings ----

    pub async fn setting(&self, name: &str) -> anyhow::Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get("value")).transpose()?)
    }

    pub async fn set_setting(&self, name: &str, value: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = $2",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether `user` must enrol a second factor before doing anything.
    pub async fn two_factor_pending(&self, user: &UserRecord) -> anyhow::Result<bool> {
        let required = self.setting(REQUIRE_TWO_FACTOR).await?.as_deref() == Some("true");
        Ok(required && !self.two_factor(&user.id).await?.enabled)
    }
}
