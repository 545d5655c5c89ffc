//! The SQL of enrolment bounds: counting devices by status and finding (and dropping) the
//! oldest pending ones. Same rules as `store.rs`: portable SQL (`$N` placeholders).

use sqlx::Row;

use crate::{domain::device::DeviceStatus, store::Store};

impl Store {
    pub async fn count_devices(&self, status: DeviceStatus) -> anyhow::Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM devices WHERE status = $1")
            .bind(status.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// The `limit` pending devices that have waited longest: (id, name), oldest first.
    pub async fn oldest_pending_devices(&self, limit: i64) -> anyhow::Result<Vec<(String, String)>> {
        let rows =
            sqlx::query("SELECT id, name FROM devices WHERE status = $1 ORDER BY created_at, id LIMIT $2")
                .bind(DeviceStatus::Pending.as_str())
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("name")?)))
            .collect()
    }

    /// Deletes a device only while it is still pending (an administrator may have just
    /// accepted it); whether it was deleted.
    pub async fn delete_pending_device(&self, id: &str) -> anyhow::Result<bool> {
        let done = sqlx::query("DELETE FROM devices WHERE id = $1 AND status = $2")
            .bind(id)
            .bind(DeviceStatus::Pending.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
