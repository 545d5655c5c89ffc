//! The device inventory (issue #19): a real agent's report, as `tether devices show --json`
//! prints it, matches this machine (`uname -r`, `uname -m`, hostname); the list filters on it; a
//! device speaking only the stock protocol (version 1, no inventory) still works and shows none;
//! and the directory listing behind the web UI's file browser lists, and refuses paths that
//! climb or leave the device's roots with a clear error.

use std::{
    process::Command,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use tether_e2e::{Agent, FakeDevice, Hub, HubOptions, stock_terminal_device, wait_for};
use tether_proto::api;

const LIMIT: Duration = Duration::from_secs(60);

fn command_output(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().expect(program);
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn shown(cli: &tether_e2e::Cli, device: &str) -> api::Device {
    let output = cli.run(&["devices", "show", device, "--json"]);
    serde_json::from_str(output.ok()).unwrap_or_else(|e| panic!("{e}: {output}"))
}

#[test]
fn a_real_agent_reports_this_machine_and_the_list_filters_on_it() {
    let root = tempfile::tempdir().expect("device root");
    std::fs::create_dir(root.path().join("logs")).unwrap();
    std::fs::write(root.path().join("a.txt"), b"abc").unwrap();
    let hub = Hub::start(HubOptions::default());
    let cli = hub.user_cli("alice", true);
    let agent_toml = format!(
        "[file_transfer]\nenabled = true\nroots = [{:?}]\n",
        root.path().display().to_string()
    );
    let agent = Agent::start(&hub, &agent_toml);
    cli.accept(&agent.name);
    cli.wait_online(&agent.name);
    let device = wait_for("the agent's inventory", LIMIT, || {
        let device = shown(&cli, &agent.name);
        device.inventory.is_some().then_some(device)
    });
    let inventory = device.inventory.clone().unwrap();
    assert_eq!(
        inventory.kernel.as_deref(),
        Some(command_output("uname", &["-r"]).as_str())
    );
    assert_eq!(
        inventory.architecture.as_deref(),
        Some(command_output("uname", &["-m"]).as_str())
    );
    assert_eq!(
        inventory.hostname.as_deref(),
        Some(command_output("uname", &["-n"]).as_str())
    );
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    if let Some(name) = inventory.os_name.as_deref() {
        assert!(os_release.contains(name), "{name} is not in /etc/os-release");
    }
    assert!(
        inventory
            .boot_time
            .is_some_and(|boot| boot > 0 && boot <= device.inventory_at.unwrap())
    );
    assert_eq!(inventory.features, ["terminal", "files"], "{inventory:?}");
    assert_eq!(inventory.versions, [1, 2, 3]);
    assert_eq!(inventory.agent_version, device.agent_version);
    assert!(
        inventory
            .addresses
            .iter()
            .all(|address| !address.starts_with("lo ")),
        "{inventory:?}"
    );

    // The human form, by a unique id prefix.
    let text = cli.run(&["devices", "show", &device.id[..13]]);
    assert!(
        text.ok()
            .contains(&format!("KERNEL        {}", inventory.kernel.as_deref().unwrap())),
        "{text}"
    );
    assert!(text.ok().contains("UPTIME"), "{text}");

    // The list: the inventory rides along, the architecture and OS filters and search use it.
    let token = cli.token();
    let bearer = format!("Bearer {token}");
    let get = |path: &str| hub.request("GET", path, &[("Authorization", &bearer)], b"");
    let architecture = inventory.architecture.clone().unwrap();
    for query in [
        format!("architecture={}", architecture.to_uppercase()),
        format!("architecture={architecture}&limit=10"),
        format!("search={}", inventory.kernel.clone().unwrap()),
    ] {
        let (status, body) = get(&format!("{}?{query}", api::DEVICES_PATH));
        assert_eq!(status, 200, "{body}");
        let list: api::DeviceList = serde_json::from_str(&body).unwrap();
        assert_eq!(list.devices.len(), 1, "{query}: {body}");
        assert!(list.devices[0].inventory.is_some(), "{query}");
    }
    let (_, body) = get(&format!("{}?architecture=sparc64&limit=10", api::DEVICES_PATH));
    let list: api::DeviceList = serde_json::from_str(&body).unwrap();
    assert!(list.devices.is_empty(), "{body}");

    // The directory listing: entries in name order; paths that climb or leave the roots are
    // refused with a clear error, and each request is a `file.list` audit event.
    let files = api::paths::device_files_path(&device.id);
    let root_path = root.path().display().to_string();
    let (status, body) = get(&format!("{files}?path={root_path}"));
    assert_eq!(status, 200, "{body}");
    let listing: api::FileListing = serde_json::from_str(&body).unwrap();
    let names: Vec<(&str, &str)> = listing
        .entries
        .iter()
        .map(|entry| (entry.name.as_str(), entry.kind.as_str()))
        .collect();
    assert_eq!(names, [("a.txt", "file"), ("logs", "directory")], "{body}");
    assert_eq!(listing.entries[0].path, format!("{root_path}/a.txt"));
    let (status, body) = get(&format!("{files}?path={root_path}/logs/../../"));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("climbs with `..`"), "{body}");
    let (status, body) = get(&format!("{files}?path=relative/dir"));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("is not absolute"), "{body}");
    let (status, body) = get(&format!("{files}?path=/etc"));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("outside the allowed roots"), "{body}");
    let audit = cli.run(&["audit", "list", "--json", "--all", "--action", "file.list"]);
    assert!(audit.ok().matches("file.list").count() >= 4, "{audit}");
}

#[test]
fn a_stock_device_works_and_shows_no_inventory() {
    let hub = Hub::start(HubOptions::default());
    let cli = hub.user_cli("alice", true);
    let fake = FakeDevice::named(&hub, &tether_e2e::unique_name("stock"));
    fake.authenticate(None);
    cli.device_id_by_name(&fake.name);
    cli.run(&["devices", "accept", &fake.name]).ok();
    let token = fake.token(None);
    let name = fake.name.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let device = stock_terminal_device(fake, token, stop.clone());
    cli.wait_online(&name);
    let shown = shown(&cli, &name);
    assert!(shown.online);
    assert!(
        shown.inventory.is_none() && shown.inventory_at.is_none(),
        "{shown:?}"
    );
    let text = cli.run(&["devices", "show", &name]);
    assert!(text.ok().contains("none reported"), "{text}");
    // It is in the list, and filtered out by any inventory filter.
    let bearer = format!("Bearer {}", cli.token());
    let get = |path: &str| hub.request("GET", path, &[("Authorization", &bearer)], b"");
    let (_, body) = get(&format!("{}?search={name}", api::DEVICES_PATH));
    assert!(body.contains(&name), "{body}");
    let (_, body) = get(&format!("{}?os=linux&limit=50", api::DEVICES_PATH));
    assert!(!body.contains(&name), "{body}");
    // Its sessions still open (version 1); a listing is refused plainly, not left hanging.
    let files = api::paths::device_files_path(&shown.id);
    let (status, body) = get(&format!("{files}?path=/tmp"));
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("cannot list directories"), "{body}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    device.join().expect("the stock device thread");
}
