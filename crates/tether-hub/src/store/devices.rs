//! The SQL of devices: their records and status, tags, inventory, and the enrolment bounds (counting devices
//! by status, finding and dropping the oldest pending ones). Same rules as `store/mod.rs`: portable
//! SQL (`$N` placeholders, TEXT and BIGINT).

use sqlx::Row as _;
use tether_proto::clock::unix_millis;

use crate::{
    domain::device::DeviceRecord, domain::device::DeviceStatus, domain::device::ReportedInventory,
    store::Store, store::split_list,
};

/// The filters of a page of devices (`devices_page`); an empty text filters nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct DevicePageFilter<'a> {
    pub status: Option<DeviceStatus>,
    /// Case-insensitive text in the name, id, agent version, identity or inventory.
    pub search: &'a str,
    /// The reported architecture, exactly (case-insensitive).
    pub architecture: &'a str,
    /// Text in the reported OS name (case-insensitive).
    pub os: &'a str,
}

/// `text` lower-cased with LIKE's wildcards escaped (`\\` is the escape), inside `%…%`.
fn like_pattern(text: &str) -> String {
    let escaped = text
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// The device columns, as a macro so that queries stay literal strings (sqlx refuses dynamic SQL).
macro_rules! device_select {
    ($rest:literal) => {
        concat!(
            "SELECT id, public_key, identity, name, status, agent_version, created_at, last_seen_at, tags, \
             inventory, inventory_at FROM devices ",
            $rest
        )
    };
}

fn device_from_row(row: &sqlx::any::AnyRow) -> Result<DeviceRecord, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(DeviceRecord {
        id: row.try_get("id")?,
        public_key: row.try_get("public_key")?,
        identity: row.try_get("identity")?,
        name: row.try_get("name")?,
        status: DeviceStatus::parse(&status).unwrap_or(DeviceStatus::Pending),
        agent_version: row.try_get("agent_version")?,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        tags: split_list(&row.try_get::<String, _>("tags")?),
        inventory: match (
            row.try_get::<Option<String>, _>("inventory")?,
            row.try_get::<Option<i64>, _>("inventory_at")?,
        ) {
            (Some(json), Some(reported_at)) => Some(ReportedInventory { json, reported_at }),
            _ => None,
        },
    })
}

impl Store {
    pub async fn device_by_public_key(&self, public_key: &str) -> anyhow::Result<Option<DeviceRecord>> {
        let row = sqlx::query(device_select!("WHERE public_key = $1"))
            .bind(public_key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(device_from_row).transpose()?)
    }

    pub async fn device(&self, id: &str) -> anyhow::Result<Option<DeviceRecord>> {
        let row = sqlx::query(device_select!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(device_from_row).transpose()?)
    }

    pub async fn devices(&self, status: Option<DeviceStatus>) -> anyhow::Result<Vec<DeviceRecord>> {
        let rows = match status {
            Some(status) => {
                sqlx::query(device_select!("WHERE status = $1 ORDER BY name, id"))
                    .bind(status.as_str())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(device_select!("ORDER BY name, id"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(rows.iter().map(device_from_row).collect::<Result<_, _>>()?)
    }

    /// One page of devices (by name) matching `filter`, and how many match in all. The database
    /// cuts the page, so a fleet of 10,000 costs one page.
    pub async fn devices_page(
        &self,
        filter: DevicePageFilter<'_>,
        offset: i64,
        limit: i64,
    ) -> anyhow::Result<(Vec<DeviceRecord>, i64)> {
        macro_rules! matching {
            () => {
                "WHERE ($1 = '' OR status = $1) AND ($2 = '%%' OR lower(name) LIKE $2 ESCAPE '\\' \
                 OR lower(id) LIKE $2 ESCAPE '\\' OR lower(COALESCE(agent_version, '')) LIKE $2 ESCAPE '\\' \
                 OR lower(identity) LIKE $2 ESCAPE '\\' OR lower(COALESCE(inventory, '')) LIKE $2 ESCAPE '\\') \
                 AND ($3 = '' OR architecture = $3) AND ($4 = '%%' OR os_name LIKE $4 ESCAPE '\\')"
            };
        }
        let status = filter.status.map(|s| s.as_str()).unwrap_or("");
        let pattern = like_pattern(filter.search);
        let architecture = filter.architecture.to_lowercase();
        let os = like_pattern(filter.os);
        let total: i64 = sqlx::query(concat!("SELECT COUNT(*) AS n FROM devices ", matching!()))
            .bind(status)
            .bind(&pattern)
            .bind(&architecture)
            .bind(&os)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let rows = sqlx::query(concat!(
            device_select!(""),
            matching!(),
            " ORDER BY name, id LIMIT $5 OFFSET $6"
        ))
        .bind(status)
        .bind(&pattern)
        .bind(&architecture)
        .bind(&os)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let devices = rows.iter().map(device_from_row).collect::<Result<_, _>>()?;
        Ok((devices, total))
    }

    /// Records what a device's agent reported of itself (`json`, an `Inventory`), with the two
    /// fields the list filters on.
    pub async fn set_device_inventory(
        &self,
        id: &str,
        json: &str,
        os_name: Option<&str>,
        architecture: Option<&str>,
    ) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE devices SET inventory = $1, inventory_at = $2, os_name = $3, architecture = $4 WHERE id = $5",
        )
        .bind(json)
        .bind(unix_millis())
        .bind(os_name.map(str::to_lowercase))
        .bind(architecture.map(str::to_lowercase))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn insert_device(&self, device: &DeviceRecord) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO devices (id, public_key, identity, name, status, agent_version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&device.id)
        .bind(&device.public_key)
        .bind(&device.identity)
        .bind(&device.name)
        .bind(device.status.as_str())
        .bind(&device.agent_version)
        .bind(device.created_at)
        .bind(unix_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records what the device reported in its latest authentication request.
    pub async fn update_device_identity(
        &self,
        id: &str,
        identity: &str,
        name: &str,
        agent_version: Option<&str>,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE devices SET identity = $1, name = $2, agent_version = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(identity)
        .bind(name)
        .bind(agent_version)
        .bind(unix_millis())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_device_status(&self, id: &str, status: DeviceStatus) -> anyhow::Result<bool> {
        let done = sqlx::query("UPDATE devices SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(unix_millis())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn delete_device(&self, id: &str) -> anyhow::Result<bool> {
        let done = sqlx::query("DELETE FROM devices WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn touch_device(&self, id: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE devices SET last_seen_at = $1 WHERE id = $2")
            .bind(unix_millis())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- device tags ----

    pub async fn set_device_tags(&self, device_id: &str, tags: &[String]) -> anyhow::Result<bool> {
        let mut sorted = tags.to_vec();
        sorted.sort();
        sorted.dedup();
        let done = sqlx::query("UPDATE devices SET tags = $1 WHERE id = $2")
            .bind(sorted.join(","))
            .bind(device_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    // ---- enrolment bounds ----

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
