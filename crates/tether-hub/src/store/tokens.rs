//! The SQL of withdrawing personal access tokens with their account. Disabling a user revokes
//! every token of theirs for good (`revoked_at` is set), so enabling the account again does not
//! bring them back: the owner makes new ones. Same rules as `store.rs`: portable SQL.

use sqlx::Row;
use tether_proto::clock::unix_millis;

use crate::store::Store;

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

#[cfg(test)]
mod tests {
    use crate::store::Store;

    #[tokio::test]
    async fn disabling_revokes_tokens_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("hub.db")).await.unwrap();
        store.upsert_user("alice", "hash", false).await.unwrap();
        let alice = store.user_by_name("alice").await.unwrap().unwrap();
        let later = crate::store::unix_millis() + 60_000;
        for (id, hash) in [("t1", "h1"), ("t2", "h2")] {
            store
                .create_access_token(id, &alice.id, id, hash, "view_devices", later)
                .await
                .unwrap();
        }
        store.revoke_access_token("t2").await.unwrap();
        assert_eq!(store.disable_user(&alice.id).await.unwrap(), ["t1"]);
        store.set_user_disabled(&alice.id, false).await.unwrap();
        assert!(store.access_token_user("h1").await.unwrap().is_none());
        assert!(!store.access_token_active("t1").await.unwrap());

        // An account disabled the old way (flag only) loses its tokens at the next start.
        store
            .create_access_token("t3", &alice.id, "t3", "h3", "view_devices", later)
            .await
            .unwrap();
        store.set_user_disabled(&alice.id, true).await.unwrap();
        assert_eq!(store.revoke_tokens_of_disabled_users().await.unwrap(), 1);
        store.set_user_disabled(&alice.id, false).await.unwrap();
        assert!(store.access_token_user("h3").await.unwrap().is_none());
    }
}
