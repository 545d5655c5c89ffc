//! The SQL of one-time enrolment tokens (migration 0015): created by an administrator for the
//! one-line install, stored as a SHA-256 hash only, spent one use per enrolled device. Same rules
//! as `store/mod.rs`: portable SQL.

use sqlx::Row as _;

use crate::{store::Store, store::split_list};

/// An enrolment token as listed (never the token itself: only its hash is stored).
#[derive(Debug, Clone, PartialEq)]
pub struct InstallTokenRecord {
    pub id: String,
    pub tags: Vec<String>,
    pub max_uses: i64,
    pub uses: i64,
    /// The user who created it.
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// What spending a token found.
#[derive(Debug, Clone, PartialEq)]
pub enum Spend {
    /// One use was taken: the token's id and tags.
    Spent {
        id: String,
        tags: Vec<String>,
    },
    Unknown,
    Revoked {
        id: String,
    },
    Expired {
        id: String,
    },
    UsedUp {
        id: String,
        max_uses: i64,
    },
}

fn seconds(millis: Option<i64>) -> Option<i64> {
    millis.map(|m| m / 1000)
}

fn record_from_row(row: &sqlx::any::AnyRow) -> Result<InstallTokenRecord, sqlx::Error> {
    Ok(InstallTokenRecord {
        id: row.try_get("id")?,
        tags: split_list(&row.try_get::<String, _>("tags")?),
        max_uses: row.try_get("max_uses")?,
        uses: row.try_get("uses")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get::<i64, _>("created_at")? / 1000,
        expires_at: row.try_get::<i64, _>("expires_at")? / 1000,
        last_used_at: seconds(row.try_get("last_used_at")?),
        revoked_at: seconds(row.try_get("revoked_at")?),
    })
}

impl Store {
    #[allow(clippy::too_many_arguments)]
    pub async fn create_install_token(
        &self,
        id: &str,
        token_hash: &str,
        tags: &[String],
        max_uses: i64,
        created_by: &str,
        now: i64,
        expires_at: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO install_tokens (id, token_hash, tags, max_uses, uses, created_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, 0, $5, $6, $7)",
        )
        .bind(id)
        .bind(token_hash)
        .bind(tags.join(","))
        .bind(max_uses)
        .bind(created_by)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every token, newest first.
    pub async fn install_tokens(&self) -> anyhow::Result<Vec<InstallTokenRecord>> {
        let rows = sqlx::query(
            "SELECT id, tags, max_uses, uses, created_by, created_at, expires_at, last_used_at, revoked_at \
             FROM install_tokens ORDER BY created_at DESC, id DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(record_from_row).collect::<Result<_, _>>()?)
    }

    pub async fn install_token(&self, id: &str) -> anyhow::Result<Option<InstallTokenRecord>> {
        let row = sqlx::query(
            "SELECT id, tags, max_uses, uses, created_by, created_at, expires_at, last_used_at, revoked_at \
             FROM install_tokens WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(record_from_row).transpose()?)
    }

    /// Revokes a token; false when it was already revoked.
    pub async fn revoke_install_token(&self, id: &str, now: i64) -> anyhow::Result<bool> {
        let done =
            sqlx::query("UPDATE install_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Takes one use of the token with this hash, if it is live. The conditional UPDATE is the
    /// whole decision, so that two devices racing for a token's last use cannot both win (on
    /// either backend, without a transaction).
    pub async fn spend_install_token(&self, token_hash: &str, now: i64) -> anyhow::Result<Spend> {
        let spent = sqlx::query(
            "UPDATE install_tokens SET uses = uses + 1, last_used_at = $1 \
             WHERE token_hash = $2 AND revoked_at IS NULL AND expires_at > $3 AND uses < max_uses",
        )
        .bind(now)
        .bind(token_hash)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        let Some(row) = sqlx::query(
            "SELECT id, tags, max_uses, uses, revoked_at, expires_at FROM install_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(Spend::Unknown);
        };
        let id: String = row.try_get("id")?;
        if spent {
            let tags = split_list(&row.try_get::<String, _>("tags")?);
            return Ok(Spend::Spent { id, tags });
        }
        Ok(if row.try_get::<Option<i64>, _>("revoked_at")?.is_some() {
            Spend::Revoked { id }
        } else if row.try_get::<i64, _>("expires_at")? <= now {
            Spend::Expired { id }
        } else {
            Spend::UsedUp {
                id,
                max_uses: row.try_get("max_uses")?,
            }
        })
    }
}
