//! Store rows and domain values as the management API shows them (`tether_proto::api`), and
//! API requests as the store takes them: the one place where what the hub keeps becomes what it
//! sends, so that no row is serialised to the wire directly.

use base64::Engine as _;
use tether_proto::api;

use crate::{
    domain::device::DeviceRecord, domain::recording_format::Record, domain::roles::Role,
    domain::roles::RoleGrant, domain::user::UserRecord, store::AccessTokenRecord, store::AuditFilter,
    store::TerminalSessionRecord, store::UserSummary, store::access::AccessRequest,
    store::install_tokens::InstallTokenRecord,
};

/// A device; `online` comes from the router. Times become Unix seconds.
pub fn device(record: DeviceRecord, online: bool) -> api::Device {
    let inventory = inventory(&record);
    api::Device {
        inventory_at: record
            .inventory
            .as_ref()
            .filter(|_| inventory.is_some())
            .map(|reported| reported.reported_at / 1000),
        inventory,
        identity: serde_json::from_str(&record.identity).unwrap_or_default(),
        id: record.id,
        name: record.name,
        status: record.status.as_str().to_owned(),
        online,
        agent_version: record.agent_version,
        created_at: record.created_at / 1000,
        last_seen_at: record.last_seen_at.map(|t| t / 1000),
        tags: record.tags,
    }
}

/// The device's stored inventory, if it has one that reads (it was checked on arrival).
pub fn inventory(record: &DeviceRecord) -> Option<tether_proto::inventory::Inventory> {
    let reported = record.inventory.as_ref()?;
    serde_json::from_str(&reported.json).ok()
}

/// Who is logged in.
pub fn user(record: &UserRecord) -> api::User {
    api::User {
        id: record.id.clone(),
        name: record.name.clone(),
        admin: record.admin,
    }
}

/// A user as listed, with the role grants the caller looked up.
pub fn user_summary(summary: UserSummary, grants: &[RoleGrant]) -> api::UserSummary {
    api::UserSummary {
        id: summary.id,
        name: summary.name,
        admin: summary.admin,
        disabled: summary.disabled,
        created_at: summary.created_at,
        roles: role_grants(grants),
    }
}

pub fn role_grants(grants: &[RoleGrant]) -> Vec<api::RoleGrant> {
    grants
        .iter()
        .map(|grant| api::RoleGrant {
            role: grant.role.clone(),
            scope: grant.scope.clone(),
        })
        .collect()
}

/// Grants as a request names them, before they are checked.
pub fn stored_grants(grants: Vec<api::RoleGrant>) -> Vec<RoleGrant> {
    grants
        .into_iter()
        .map(|grant| RoleGrant {
            role: grant.role,
            scope: grant.scope,
        })
        .collect()
}

/// A role, its permissions by name.
pub fn role(role: Role) -> api::Role {
    api::Role {
        name: role.name,
        permissions: role
            .permissions
            .iter()
            .map(|action| action.name().to_owned())
            .collect(),
        description: role.description,
        builtin: role.builtin,
    }
}

pub fn access_token(record: AccessTokenRecord) -> api::AccessToken {
    api::AccessToken {
        id: record.id,
        name: record.name,
        permissions: record.permissions,
        created_at: record.created_at,
        expires_at: record.expires_at,
        last_used_at: record.last_used_at,
        revoked: record.revoked,
    }
}

pub fn access_request(record: AccessRequest) -> api::AccessRequest {
    api::AccessRequest {
        id: record.id,
        user_id: record.user_id,
        user_name: record.user_name,
        scope: record.scope,
        permissions: record.permissions,
        duration_secs: record.duration_secs,
        reason: record.reason,
        status: record.status,
        created_at: record.created_at,
        decided_by: record.decided_by,
        decided_at: record.decided_at,
        note: record.note,
        expires_at: record.expires_at,
    }
}

/// A recorded terminal session; `live` comes from the recorders (and the other replicas).
pub fn terminal_session(record: TerminalSessionRecord, live: bool) -> api::TerminalSession {
    api::TerminalSession {
        sid: record.sid,
        device_id: record.device_id,
        device_name: record.device_name,
        user_id: record.user_id,
        user_name: record.user_name,
        command: record.command,
        started_at: record.started_at,
        ended_at: record.ended_at,
        bytes_out: record.bytes_out,
        width: record.width,
        height: record.height,
        live,
        excerpt: None,
    }
}

pub fn install_token(record: InstallTokenRecord) -> api::InstallToken {
    api::InstallToken {
        id: record.id,
        tags: record.tags,
        max_uses: record.max_uses,
        uses: record.uses,
        created_by: record.created_by,
        created_at: record.created_at,
        expires_at: record.expires_at,
        last_used_at: record.last_used_at,
        revoked_at: record.revoked_at,
    }
}

/// One record of a recording as its JSON Lines carry it (data in base64).
pub fn recording_record(record: Record) -> api::RecordingRecord {
    let encode = |data: &[u8]| Some(base64::engine::general_purpose::STANDARD.encode(data));
    let line = |t: u64, k: &str| api::RecordingRecord {
        t,
        k: k.to_owned(),
        w: None,
        h: None,
        d: None,
    };
    match record {
        Record::Keyframe {
            time_ms,
            width,
            height,
            screen,
        } => api::RecordingRecord {
            w: Some(width),
            h: Some(height),
            d: encode(&screen),
            ..line(time_ms, "screen")
        },
        Record::Output { time_ms, data } => api::RecordingRecord {
            d: encode(&data),
            ..line(time_ms, "o")
        },
        Record::Input { time_ms, data } => api::RecordingRecord {
            d: encode(&data),
            ..line(time_ms, "i")
        },
        Record::Resize {
            time_ms,
            width,
            height,
        } => api::RecordingRecord {
            w: Some(width),
            h: Some(height),
            ..line(time_ms, "r")
        },
    }
}

/// The store's filter of an audit query (paging by `limit` is the handler's).
pub fn audit_filter(query: api::AuditQuery) -> AuditFilter {
    AuditFilter {
        from: query.from,
        to: query.to,
        actor: query.actor,
        device: query.device,
        action: query.action,
        session: query.session,
        outcome: query.outcome,
        before: query.before,
    }
}
