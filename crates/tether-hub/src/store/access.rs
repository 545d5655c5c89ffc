//! The SQL of access control: custom roles, role grants, approval policies and access requests,
//! and the grants a user holds from them (device tags are in `devices.rs`, the second factor in
//! `two_factor.rs`). Same rules as `store/mod.rs`: portable SQL (`$N` placeholders, TEXT and
//! BIGINT).

use sqlx::Row;
use tether_proto::clock::unix_millis;

use crate::{
    domain::permissions::Action, domain::roles, domain::roles::Grant, domain::roles::Grants,
    domain::roles::Role, domain::roles::RoleGrant, domain::roles::Scope, domain::user::UserRecord,
    store::Store, store::split_list,
};

/// Named here as well, where callers have always found it.
pub use super::two_factor::REQUIRE_TWO_FACTOR;

/// An access request and its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessRequest {
    pub id: String,
    pub user_id: String,
    pub user_name: String,
    pub scope: String,
    pub permissions: Vec<String>,
    pub duration_secs: i64,
    pub reason: String,
    pub status: String,
    pub created_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub note: Option<String>,
    pub expires_at: Option<i64>,
}

fn request_from_row(row: &sqlx::any::AnyRow) -> Result<AccessRequest, sqlx::Error> {
    let seconds = |millis: Option<i64>| millis.map(|m| m / 1000);
    Ok(AccessRequest {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        user_name: row.try_get("user_name")?,
        scope: row.try_get("scope")?,
        permissions: split_list(&row.try_get::<String, _>("permissions")?),
        duration_secs: row.try_get("duration_secs")?,
        reason: row.try_get("reason")?,
        status: row.try_get("status")?,
        created_at: row.try_get::<i64, _>("created_at")? / 1000,
        decided_by: row.try_get("decided_by")?,
        decided_at: seconds(row.try_get("decided_at")?),
        note: row.try_get("note")?,
        expires_at: seconds(row.try_get("expires_at")?),
    })
}

/// The request columns, as a macro so that queries stay literal strings (sqlx refuses dynamic SQL).
macro_rules! request_select {
    ($rest:literal) => {
        concat!(
            "SELECT id, user_id, user_name, scope, permissions, duration_secs, reason, status, ",
            "created_at, decided_by, decided_at, note, expires_at FROM access_requests ",
            $rest
        )
    };
}

impl Store {
    // ---- roles ----

    /// Built-in roles, then custom ones by name.
    pub async fn roles(&self) -> anyhow::Result<Vec<Role>> {
        let rows = sqlx::query("SELECT name, permissions, description FROM roles ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        let mut all = roles::builtin_roles();
        for row in rows {
            all.push(Role {
                name: row.try_get("name")?,
                permissions: roles::parse_permissions(&row.try_get::<String, _>("permissions")?),
                description: row.try_get("description")?,
                builtin: false,
            });
        }
        Ok(all)
    }

    pub async fn create_role(
        &self,
        name: &str,
        permissions: &[Action],
        description: &str,
    ) -> anyhow::Result<()> {
        let names: Vec<&str> = permissions.iter().map(|a| a.name()).collect();
        sqlx::query("INSERT INTO roles (name, permissions, description, created_at) VALUES ($1, $2, $3, $4)")
            .bind(name)
            .bind(names.join(","))
            .bind(description)
            .bind(unix_millis())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes a custom role and every grant of it; returns the users who held it (`None` when
    /// there was no such role).
    pub async fn delete_role(&self, name: &str) -> anyhow::Result<Option<Vec<String>>> {
        let mut transaction = self.pool.begin().await?;
        let holders = sqlx::query("SELECT DISTINCT user_id FROM role_grants WHERE role = $1")
            .bind(name)
            .fetch_all(&mut *transaction)
            .await?
            .iter()
            .map(|row| row.try_get("user_id"))
            .collect::<Result<Vec<String>, _>>()?;
        let deleted = sqlx::query("DELETE FROM roles WHERE name = $1")
            .bind(name)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM role_grants WHERE role = $1")
            .bind(name)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok((deleted > 0).then_some(holders))
    }

    // ---- role grants ----

    pub async fn role_grants(&self, user_id: &str) -> anyhow::Result<Vec<RoleGrant>> {
        let rows = sqlx::query("SELECT role, scope FROM role_grants WHERE user_id = $1 ORDER BY role, scope")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(RoleGrant {
                    role: row.try_get("role")?,
                    scope: row.try_get("scope")?,
                })
            })
            .collect()
    }

    /// Replaces a user's role grants. The built-in admin role on every device is kept as the
    /// `users.admin` flag (so that it is one column to check, and cannot be orphaned).
    pub async fn set_role_grants(&self, user_id: &str, grants: &[RoleGrant]) -> anyhow::Result<()> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query("DELETE FROM role_grants WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *transaction)
            .await?;
        let admin = grants.iter().any(|g| g.role == "admin" && g.scope == "*");
        sqlx::query("UPDATE users SET admin = $1 WHERE id = $2")
            .bind(admin as i64)
            .bind(user_id)
            .execute(&mut *transaction)
            .await?;
        for grant in grants.iter().filter(|g| !(g.role == "admin" && g.scope == "*")) {
            sqlx::query(
                "INSERT INTO role_grants (id, user_id, role, scope, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(user_id)
            .bind(&grant.role)
            .bind(&grant.scope)
            .bind(unix_millis())
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Everything `user` holds: role grants resolved to permissions, approved access that has
    /// not expired, and the approval policies.
    pub async fn grants(&self, user: &UserRecord) -> anyhow::Result<Grants> {
        let mut grants = Grants::default();
        // Until a required second factor is enrolled, nothing is granted.
        if self.two_factor_pending(user).await? {
            grants.two_factor_pending = true;
            return Ok(grants);
        }
        // This runs for every authenticated request: custom roles are read only when a grant
        // names one.
        let stored_grants = self.role_grants(&user.id).await?;
        let builtin = roles::builtin_roles();
        let needs_custom = stored_grants
            .iter()
            .any(|g| !builtin.iter().any(|r| r.name == g.role));
        let roles = if needs_custom {
            self.roles().await?
        } else {
            builtin
        };
        let permissions_of = |name: &str| {
            roles
                .iter()
                .find(|r| r.name == name)
                .map(|r| r.permissions.clone())
        };
        if user.admin {
            grants.standing.push(Grant {
                permissions: permissions_of("admin").unwrap_or_default(),
                scope: Scope::AllDevices,
                expires_at: None,
            });
        }
        for stored in stored_grants {
            // A grant of a deleted role, or an unreadable scope, grants nothing.
            if let (Some(permissions), Ok(scope)) =
                (permissions_of(&stored.role), Scope::parse(&stored.scope))
            {
                grants.standing.push(Grant {
                    permissions,
                    scope,
                    expires_at: None,
                });
            }
        }
        let rows = sqlx::query(
            "SELECT scope, permissions, expires_at FROM access_requests \
             WHERE user_id = $1 AND status = 'approved' AND expires_at > $2",
        )
        .bind(&user.id)
        .bind(unix_millis())
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            if let Ok(scope) = Scope::parse(&row.try_get::<String, _>("scope")?) {
                grants.approved.push(Grant::approved(
                    roles::parse_permissions(&row.try_get::<String, _>("permissions")?),
                    scope,
                    row.try_get("expires_at")?,
                ));
            }
        }
        grants.approval_required = self
            .approval_policies()
            .await?
            .iter()
            .filter_map(|scope| Scope::parse(scope).ok())
            .collect();
        Ok(grants)
    }

    // ---- approval on demand ----

    pub async fn approval_policies(&self) -> anyhow::Result<Vec<String>> {
        let rows = sqlx::query("SELECT scope FROM approval_policies ORDER BY scope")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get("scope"))
            .collect::<Result<_, _>>()?)
    }

    /// Requires (or stops requiring) approval on a scope; returns whether anything changed.
    pub async fn set_approval_policy(&self, scope: &str, required: bool) -> anyhow::Result<bool> {
        let done = if required {
            sqlx::query(
                "INSERT INTO approval_policies (scope, created_at) VALUES ($1, $2) ON CONFLICT (scope) DO NOTHING",
            )
            .bind(scope)
            .bind(unix_millis())
            .execute(&self.pool)
            .await?
        } else {
            sqlx::query("DELETE FROM approval_policies WHERE scope = $1")
                .bind(scope)
                .execute(&self.pool)
                .await?
        };
        Ok(done.rows_affected() > 0)
    }

    pub async fn insert_access_request(&self, request: &AccessRequest) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO access_requests (id, user_id, user_name, scope, permissions, duration_secs, reason, \
             status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&request.id)
        .bind(&request.user_id)
        .bind(&request.user_name)
        .bind(&request.scope)
        .bind(request.permissions.join(","))
        .bind(request.duration_secs)
        .bind(&request.reason)
        .bind(&request.status)
        .bind(request.created_at * 1000)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn access_request(&self, id: &str) -> anyhow::Result<Option<AccessRequest>> {
        let row = sqlx::query(request_select!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(request_from_row).transpose()?)
    }

    /// The newest requests first, optionally only one user's.
    pub async fn access_requests(
        &self,
        user_id: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<AccessRequest>> {
        let rows = sqlx::query(request_select!(
            "WHERE ($1 = '' OR user_id = $1) ORDER BY created_at DESC, id DESC LIMIT $2"
        ))
        .bind(user_id.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(request_from_row).collect::<Result<_, _>>()?)
    }

    /// Moves a request from `from` to `to` (approve, deny, revoke), atomically: returns false
    /// when it was no longer in `from` (someone else decided first).
    pub async fn decide_access_request(
        &self,
        id: &str,
        from: &str,
        to: &str,
        decided_by: &str,
        note: Option<&str>,
        expires_at: Option<i64>,
    ) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE access_requests SET status = $1, decided_by = $2, decided_at = $3, note = $4, \
             expires_at = $5 WHERE id = $6 AND status = $7",
        )
        .bind(to)
        .bind(decided_by)
        .bind(unix_millis())
        .bind(note)
        .bind(expires_at)
        .bind(id)
        .bind(from)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Marks approved requests whose time is up as expired; returns them.
    pub async fn expire_access_requests(&self) -> anyhow::Result<Vec<AccessRequest>> {
        let now = unix_millis();
        let rows = sqlx::query(request_select!("WHERE status = 'approved' AND expires_at <= $1"))
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        let expired: Vec<AccessRequest> = rows.iter().map(request_from_row).collect::<Result<_, _>>()?;
        for request in &expired {
            sqlx::query(
                "UPDATE access_requests SET status = 'expired' WHERE id = $1 AND status = 'approved'",
            )
            .bind(&request.id)
            .execute(&self.pool)
            .await?;
        }
        Ok(expired)
    }
}
