//! What `/readyz` asks of the database: that it answers and carries every migration this build
//! knows; and the pool's figures for `/metrics`.

use std::time::Duration;

use super::{MIGRATOR, Store};

/// A readiness check that takes longer than this fails: a load balancer must not wait on a
/// database that hangs.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

impl Store {
    /// Ok when the database answers and every migration of this build is applied; otherwise
    /// what is wrong.
    pub async fn check_ready(&self) -> Result<(), String> {
        let check = async {
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map_err(|error| format!("the database does not answer: {error}"))?;
            let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
                .map_err(|error| format!("cannot read the applied migrations: {error}"))?;
            let known = MIGRATOR.iter().count() as i64;
            if applied < known {
                return Err(format!(
                    "the database has {applied} of the {known} migrations of this build"
                ));
            }
            Ok(())
        };
        tokio::time::timeout(CHECK_TIMEOUT, check)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "the database did not answer within {} s",
                    CHECK_TIMEOUT.as_secs()
                ))
            })
    }

    /// The pool's connections: open in all, and idle among them.
    pub fn pool_figures(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }
}
