//! Devices as operators manage them: the list (filters, pages), one device with its inventory,
//! accepting, rejecting and removing one. Every action is recorded in the audit log before it is confirmed.

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use tether_proto::api;
use tether_proto::clock::unix_millis;

use crate::{
    domain::audit::Object, domain::audit::RequestContext, domain::device::DeviceRecord,
    domain::device::DeviceStatus, domain::permissions::Action, domain::principal::Principal,
    domain::principal::authorize_quietly, domain::roles::Scope, http::convert, http::error::ApiError,
    http::extract::UserCaller, http::state::AppState, service::auth::permit, service::auth::permitted_device,
    store::devices::DevicePageFilter,
};

/// Largest page of devices one request may ask for.
const MAX_DEVICE_PAGE: usize = 1000;

fn matches_search(device: &DeviceRecord, needle: &str) -> bool {
    [
        device.name.as_str(),
        device.id.as_str(),
        device.agent_version.as_deref().unwrap_or(""),
        device.identity.as_str(),
        device
            .inventory
            .as_ref()
            .map_or("", |inventory| inventory.json.as_str()),
    ]
    .iter()
    .any(|field| field.to_lowercase().contains(needle))
}

/// The architecture (exactly) and OS name (contains) filters, both lower-cased; empty: any.
fn matches_inventory(device: &DeviceRecord, architecture: &str, os: &str) -> bool {
    if architecture.is_empty() && os.is_empty() {
        return true;
    }
    let Some(inventory) = convert::inventory(device) else {
        return false;
    };
    let reported_architecture = inventory.architecture.unwrap_or_default().to_lowercase();
    let reported_os = inventory.os_name.unwrap_or_default().to_lowercase();
    (architecture.is_empty() || reported_architecture == architecture)
        && (os.is_empty() || reported_os.contains(os))
}

#[utoipa::path(
    get,
    path = &api::paths::device_path("{id}"),
    tag = "devices",
    params(("id" = String, Path, description = "The device id")),
    responses(
        (status = 200, description = "The device, with its inventory when its agent reported one", body = api::Device),
        (status = 404, description = "No such device (or not one the caller may see)", body = api::ApiError)
    )
)]
pub async fn show_device(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Path(id): Path<String>,
) -> Result<Json<api::Device>, ApiError> {
    let device = permitted_device(&state, &principal, &context, &id, Action::ViewDevices).await?;
    let online = state.router.is_online(&id).await;
    Ok(Json(convert::device(device, online)))
}

#[utoipa::path(
    get,
    path = api::paths::DEVICES_PATH,
    tag = "devices",
    params(api::DeviceQuery),
    responses((status = 200, description = "The devices the caller may see", body = api::DeviceList))
)]
pub async fn list_devices(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Query(filter): Query<api::DeviceQuery>,
) -> Result<Json<api::DeviceList>, ApiError> {
    permit(&state, &principal, &context, Action::ViewDevices, None).await?;
    let status = match filter.status.as_deref() {
        None | Some("") => None,
        Some(text) => Some(DeviceStatus::parse(text).ok_or_else(|| {
            ApiError::bad_request(format!("unknown status {text:?} (pending, accepted or rejected)"))
        })?),
    };
    let online = state.router.online_devices().await;
    let needle = filter.search.clone().unwrap_or_default().trim().to_lowercase();
    let architecture = filter
        .architecture
        .clone()
        .unwrap_or_default()
        .trim()
        .to_lowercase();
    let os = filter.os.clone().unwrap_or_default().trim().to_lowercase();
    // A page without the online filter is cut by the database (the web UI's common case), when
    // the caller sees every device; a user of some groups gets theirs filtered here.
    let sees_all = matches!(&principal, Principal::User { grants, .. }
        if grants.allow_on_scope(Action::ViewDevices, &Scope::AllDevices, unix_millis()) && !grants.two_factor_pending);
    let looks_up = filter.name.is_some() || filter.id_prefix.is_some();
    if let (Some(limit), None, true, false) = (filter.limit, filter.online, sees_all, looks_up) {
        let limit = limit.clamp(1, MAX_DEVICE_PAGE) as i64;
        let offset = i64::try_from(filter.offset.unwrap_or(0)).unwrap_or(i64::MAX);
        let page_filter = DevicePageFilter {
            status,
            search: &needle,
            architecture: &architecture,
            os: &os,
        };
        let (page, total) = state.store.devices_page(page_filter, offset, limit).await?;
        let devices = page
            .into_iter()
            .map(|d| {
                let is_online = online.contains(&d.id);
                convert::device(d, is_online)
            })
            .collect();
        return Ok(Json(api::DeviceList {
            devices,
            total: Some(total as u64),
        }));
    }
    // Online-ness lives in the router, not the database: that filter (and the CLI's whole
    // list) is applied here, still cutting the page before any JSON is built.
    let matching: Vec<DeviceRecord> = state
        .store
        .devices(status)
        .await?
        .into_iter()
        // Each user sees the devices they hold view_devices on (their groups).
        .filter(|d| authorize_quietly(&principal, Action::ViewDevices, d))
        .filter(|d| needle.is_empty() || matches_search(d, &needle))
        .filter(|d| matches_inventory(d, &architecture, &os))
        .filter(|d| filter.name.as_ref().is_none_or(|name| &d.name == name))
        .filter(|d| {
            filter
                .id_prefix
                .as_ref()
                .is_none_or(|prefix| d.id.starts_with(prefix.as_str()))
        })
        .filter(|d| {
            filter
                .online
                .is_none_or(|wanted| online.contains(&d.id) == wanted)
        })
        .collect();
    let total = matching.len();
    let limit = filter.limit.map_or(total, |limit| limit.min(MAX_DEVICE_PAGE));
    let devices = matching
        .into_iter()
        .skip(filter.offset.unwrap_or(0))
        .take(limit)
        .map(|d| {
            let is_online = online.contains(&d.id);
            convert::device(d, is_online)
        })
        .collect();
    Ok(Json(api::DeviceList {
        devices,
        total: Some(total as u64),
    }))
}

/// Records a device-management action (before it takes effect).
async fn record_device_action(
    state: &AppState,
    principal: &Principal,
    context: &RequestContext,
    action: &'static str,
    device: &DeviceRecord,
) -> Result<(), ApiError> {
    let details = serde_json::json!({ "previous_status": device.status.as_str() });
    let object = Object::device(&device.id, &device.name);
    crate::service::audit::record_success(state, principal, context, action, object, details)
        .await
        .map_err(ApiError::from)
}

#[utoipa::path(
    post,
    path = &api::paths::device_accept_path("{id}"),
    tag = "devices",
    params(("id" = String, Path, description = "The device id")),
    responses((status = 200, description = "The accepted device", body = api::Device))
)]
pub async fn accept_device(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Path(id): Path<String>,
) -> Result<Json<api::Device>, ApiError> {
    let mut device = permitted_device(&state, &principal, &context, &id, Action::ManageDevices).await?;
    record_device_action(&state, &principal, &context, "device.accept", &device).await?;
    state.store.set_device_status(&id, DeviceStatus::Accepted).await?;
    device.status = DeviceStatus::Accepted;
    tracing::info!("{} accepted device {} ({id})", principal.describe(), device.name);
    let online = state.router.is_online(&id).await;
    Ok(Json(convert::device(device, online)))
}

#[utoipa::path(
    post,
    path = &api::paths::device_reject_path("{id}"),
    tag = "devices",
    params(("id" = String, Path, description = "The device id")),
    responses((status = 200, description = "The rejected device", body = api::Device))
)]
pub async fn reject_device(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Path(id): Path<String>,
) -> Result<Json<api::Device>, ApiError> {
    let mut device = permitted_device(&state, &principal, &context, &id, Action::ManageDevices).await?;
    record_device_action(&state, &principal, &context, "device.reject", &device).await?;
    state.store.set_device_status(&id, DeviceStatus::Rejected).await?;
    device.status = DeviceStatus::Rejected;
    // The status is stored first, so a reconnect racing with the kick is refused.
    state
        .router
        .kick_device(
            &id,
            &format!("the device was rejected by {}", principal.describe()),
        )
        .await;
    tracing::info!("{} rejected device {} ({id})", principal.describe(), device.name);
    Ok(Json(convert::device(device, false)))
}

#[utoipa::path(
    delete,
    path = &api::paths::device_path("{id}"),
    tag = "devices",
    params(("id" = String, Path, description = "The device id")),
    responses((status = 204, description = "Done"))
)]
pub async fn remove_device(
    State(state): State<AppState>,
    context: RequestContext,
    UserCaller(principal): UserCaller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let device = permitted_device(&state, &principal, &context, &id, Action::ManageDevices).await?;
    record_device_action(&state, &principal, &context, "device.remove", &device).await?;
    state.store.delete_device(&id).await?;
    state
        .router
        .kick_device(
            &id,
            &format!("the device was removed by {}", principal.describe()),
        )
        .await;
    tracing::info!("{} removed device {} ({id})", principal.describe(), device.name);
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use crate::{
        domain::device::DeviceRecord, domain::device::DeviceStatus, store::Store,
        store::devices::DevicePageFilter,
    };

    fn search(text: &str) -> DevicePageFilter<'_> {
        DevicePageFilter {
            search: text,
            ..DevicePageFilter::default()
        }
    }

    fn device(n: usize, status: DeviceStatus) -> DeviceRecord {
        DeviceRecord {
            id: format!("id-{n:02}"),
            public_key: format!("key-{n:02}"),
            identity: format!(
                "{{\"hostname\":\"host-{n:02}\",\"site\":\"{}\"}}",
                if n.is_multiple_of(2) { "Plant_A" } else { "plantXA" }
            ),
            name: format!("device-{n:02}"),
            status,
            agent_version: Some("0.1.0".into()),
            created_at: 0,
            last_seen_at: None,
            tags: Vec::new(),
            inventory: None,
        }
    }

    #[tokio::test]
    async fn the_database_cuts_pages_searches_and_filters() {
        let directory = std::env::temp_dir().join(format!("tether-device-page-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let store = Store::open_sqlite(&directory.join("hub.db")).await.unwrap();
        for n in 0..30 {
            let status = if n < 10 {
                DeviceStatus::Pending
            } else {
                DeviceStatus::Accepted
            };
            store.insert_device(&device(n, status)).await.unwrap();
        }
        let (page, total) = store.devices_page(search(""), 25, 10).await.unwrap();
        assert_eq!(total, 30);
        let names: Vec<_> = page.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            ["device-25", "device-26", "device-27", "device-28", "device-29"]
        );
        let (page, total) = store
            .devices_page(
                DevicePageFilter {
                    status: Some(DeviceStatus::Pending),
                    ..DevicePageFilter::default()
                },
                0,
                3,
            )
            .await
            .unwrap();
        assert_eq!((page.len(), total), (3, 10));
        // Case-insensitive, over the identity; `_` is a character, not a wildcard.
        let (_, total) = store.devices_page(search("plant_a"), 0, 50).await.unwrap();
        assert_eq!(total, 15);
        let (page, total) = store.devices_page(search("DEVICE-07"), 0, 50).await.unwrap();
        assert_eq!((page[0].id.as_str(), total), ("id-07", 1));
        let (_, total) = store.devices_page(search("100%"), 0, 50).await.unwrap();
        assert_eq!(total, 0);
        std::fs::remove_dir_all(&directory).ok();
    }
}
