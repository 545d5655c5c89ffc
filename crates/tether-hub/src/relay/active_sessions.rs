//! Live file transfers and port forwards, listed while they run (`active_sessions`, migration
//! 0019) so that the Active sessions list shows every kind of session, terminals being in
//! `open_terminals`. A [`Listed`] guard holds a row: inserted when the transfer or forward
//! starts, deleted when the guard is dropped, whichever way the session ends (finished, failed,
//! cancelled, the client gone). Rows of a hub that died are deleted at its next start or by a
//! surviving replica (`open_terminals::close_interrupted`, `replicas`).
//!
//! Cheap on purpose: a port forward is one row for the whole `tether port-forward` run, written
//! once at its first connection and again only when a connection reaches a target not seen
//! before (at most [`MAX_TARGETS`] of them), never per forwarded connection.

use tether_proto::clock::unix_millis;

use crate::store::{
    Store,
    active_sessions::{ActiveSessionRecord, ActivityDetail, ForwardTarget},
};

/// At most this many distinct targets are listed for one port forward (a run names a few).
pub const MAX_TARGETS: usize = 8;

/// Who runs a session on which device, for its row.
pub struct Owner<'a> {
    pub sid: &'a str,
    pub user_id: &'a str,
    pub user_name: &'a str,
    pub device_id: &'a str,
    pub device_name: &'a str,
}

/// A row of `active_sessions`, deleted when dropped.
pub struct Listed {
    store: Store,
    id: String,
    detail: ActivityDetail,
}

impl Listed {
    /// Inserts the row of a session that starts doing `detail`, served by `replica_id`.
    async fn start(
        store: &Store,
        replica_id: &str,
        owner: Owner<'_>,
        detail: ActivityDetail,
    ) -> anyhow::Result<Listed> {
        let record = ActiveSessionRecord {
            id: uuid::Uuid::now_v7().to_string(),
            sid: owner.sid.to_owned(),
            detail,
            replica_id: replica_id.to_owned(),
            user_id: owner.user_id.to_owned(),
            user_name: owner.user_name.to_owned(),
            device_id: owner.device_id.to_owned(),
            device_name: owner.device_name.to_owned(),
            started_at: unix_millis(),
        };
        // The guard first: a caller cancelled during the insert still deletes what it wrote.
        let listed = Listed {
            store: store.clone(),
            id: record.id.clone(),
            detail: record.detail.clone(),
        };
        store.insert_active_session(&record).await?;
        Ok(listed)
    }

    /// [`Listed::start`] for callers that go on without a row: the list is a view, the audit
    /// log the record (and fails closed by itself), so a row that cannot be written is logged.
    pub async fn start_logged(
        store: &Store,
        replica_id: &str,
        owner: Owner<'_>,
        detail: ActivityDetail,
    ) -> Option<Listed> {
        let sid = owner.sid.to_owned();
        match Listed::start(store, replica_id, owner, detail).await {
            Ok(listed) => Some(listed),
            Err(error) => {
                tracing::warn!("session {sid}: cannot list it as active: {error:#}");
                None
            }
        }
    }

    /// A port forward's connection reaches `target`: listed if it is new (one write per new
    /// target, up to [`MAX_TARGETS`]; nothing for the thousands of connections to known ones).
    pub async fn reach(&mut self, target: ForwardTarget) -> anyhow::Result<()> {
        let ActivityDetail::PortForward { targets } = &mut self.detail else {
            return Ok(());
        };
        if targets.len() >= MAX_TARGETS || targets.contains(&target) {
            return Ok(());
        }
        targets.push(target);
        self.store.update_active_session(&self.id, &self.detail).await
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        let (store, id) = (self.store.clone(), std::mem::take(&mut self.id));
        // Dropped on the runtime (sessions and response bodies run there); a row left by a
        // failed delete goes at the next start, like the rows of a hub that died.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = store.delete_active_session(&id).await {
                    tracing::warn!("deleting live session row {id}: {error:#}");
                }
            });
        }
    }
}

/// The detail of a file transfer.
pub fn file_transfer(upload: bool, path: &str) -> ActivityDetail {
    ActivityDetail::FileTransfer {
        upload,
        path: path.to_owned(),
    }
}

/// A port-forward target as listed.
pub fn forward_target(target: &tether_proto::port_forward::Target) -> ForwardTarget {
    ForwardTarget {
        target: format!("{}:{}", target.host, target.port),
        protocol: target.transport.as_str().to_owned(),
    }
}
