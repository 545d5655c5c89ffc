//! The storage checks of device inventories (`store/devices.rs`: what a Tether agent reports,
//! and the list's architecture, OS and search filters over it), run on both backends by
//! `store/tests.rs`.

use crate::{
    domain::device::DeviceRecord, domain::device::DeviceStatus, store::Store,
    store::devices::DevicePageFilter,
};

fn device(id: &str) -> DeviceRecord {
    DeviceRecord {
        id: id.into(),
        public_key: format!("inventory-key-{id}"),
        identity: "{}".into(),
        name: format!("inventory-{id}"),
        status: DeviceStatus::Accepted,
        agent_version: None,
        created_at: 0,
        last_seen_at: None,
        tags: Vec::new(),
        inventory: None,
    }
}

/// Stored, read back with the device, replaced by the next report, and filtered on; a device
/// that never reported one (a stock mender-connect) has none and matches no inventory filter.
pub(super) async fn device_inventory(store: &Store) {
    for id in ["inv-arm", "inv-x86", "inv-stock"] {
        store.insert_device(&device(id)).await.unwrap();
    }
    assert!(
        store
            .device("inv-stock")
            .await
            .unwrap()
            .unwrap()
            .inventory
            .is_none()
    );
    let arm = r#"{"os_name":"Debian GNU/Linux","architecture":"aarch64","hostname":"pump-17","addresses":["eth0 10.1.2.3/24"]}"#;
    assert!(
        store
            .set_device_inventory("inv-arm", arm, Some("Debian GNU/Linux"), Some("aarch64"))
            .await
            .unwrap()
    );
    let old = r#"{"os_name":"Alpine Linux","architecture":"x86_64"}"#;
    store
        .set_device_inventory("inv-x86", old, Some("Alpine Linux"), Some("x86_64"))
        .await
        .unwrap();
    let new = r#"{"os_name":"Ubuntu","architecture":"X86_64","hostname":"gate-2"}"#;
    store
        .set_device_inventory("inv-x86", new, Some("Ubuntu"), Some("X86_64"))
        .await
        .unwrap();
    assert!(!store.set_device_inventory("nope", new, None, None).await.unwrap());
    let stored = store.device("inv-x86").await.unwrap().unwrap().inventory.unwrap();
    assert_eq!(stored.json, new, "the last report replaces the one before");
    assert!(stored.reported_at > 0);

    let ids = |page: Vec<DeviceRecord>| -> Vec<String> {
        page.into_iter()
            .map(|d| d.id)
            .filter(|id| id.starts_with("inv-"))
            .collect()
    };
    let filtered = |architecture: &'static str, os: &'static str, search: &'static str| DevicePageFilter {
        architecture,
        os,
        search,
        ..DevicePageFilter::default()
    };
    let (page, total) = store
        .devices_page(filtered("AARCH64", "", ""), 0, 50)
        .await
        .unwrap();
    assert_eq!((ids(page), total), (vec!["inv-arm".to_owned()], 1));
    let (page, _) = store
        .devices_page(filtered("x86_64", "", ""), 0, 50)
        .await
        .unwrap();
    assert_eq!(
        ids(page),
        ["inv-x86"],
        "the architecture is matched case-insensitively"
    );
    let (page, _) = store
        .devices_page(filtered("", "debian", ""), 0, 50)
        .await
        .unwrap();
    assert_eq!(ids(page), ["inv-arm"], "the OS filter finds text in the name");
    let (page, _) = store
        .devices_page(filtered("", "alpine", ""), 0, 50)
        .await
        .unwrap();
    assert!(ids(page).is_empty(), "the old report no longer matches");
    let (page, _) = store
        .devices_page(filtered("", "", "10.1.2"), 0, 50)
        .await
        .unwrap();
    assert_eq!(ids(page), ["inv-arm"], "search matches the inventory");
    let (page, _) = store
        .devices_page(filtered("aarch64", "ubuntu", ""), 0, 50)
        .await
        .unwrap();
    assert!(ids(page).is_empty(), "filters combine");
    let (page, _) = store
        .devices_page(filtered("", "", "inventory-inv"), 0, 50)
        .await
        .unwrap();
    assert_eq!(ids(page), ["inv-arm", "inv-stock", "inv-x86"]);
    for id in ["inv-arm", "inv-x86", "inv-stock"] {
        store.delete_device(id).await.unwrap();
    }
}
