//! The device page and devices list of issue 19 in real headless Chromium, driven by
//! `web/tests/device_page.e2e.mjs`: a real hub and two real agents (one with file transfer, one
//! without). The script checks the inventory panel (kernel and architecture of this machine,
//! uptime from the boot time), the list's OS and architecture columns and filters, browsing a
//! directory of the device, download by click, upload by drop into the shown directory, the
//! overwrite warning, and the "file transfer is off on this device" panel; it saves
//! `device-*.png` screenshots at 1400×900 and 400 px in `target/web-screenshots/`.
//!
//! Needs `node`, `web/node_modules`, Chromium and a hub built after `npm run build`.

use std::process::Command;

use tether_e2e::{Agent, Hub, browser::run_web_script};

fn uname(flag: &str) -> String {
    let output = Command::new("uname").arg(flag).output().expect("uname");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn the_device_page_shows_inventory_and_browses_files() {
    let mut hub = Hub::start_default();
    let password = "pw-device-page-correct-horse";
    hub.add_user("pageadmin", true, password);
    let device_tmp = tempfile::Builder::new()
        .prefix("tether-e2e-device-page-")
        .tempdir()
        .expect("temp dir");
    let root = device_tmp.path().join("data");
    std::fs::create_dir_all(root.join("logs")).unwrap();
    let download_text = format!("from-the-device-{}", std::process::id());
    std::fs::write(root.join("a.txt"), &download_text).unwrap();
    std::fs::write(root.join("logs/inner.txt"), b"inner").unwrap();
    let with_files = Agent::start(
        &hub,
        &format!(
            "[terminal]\nshell = \"/bin/sh\"\n\n[file_transfer]\nenabled = true\nroots = [{:?}]\n",
            root.display().to_string()
        ),
    );
    let without_files = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\n");
    let cli = hub.user_cli("operator", true);
    for agent in [&with_files, &without_files] {
        cli.accept(&agent.name);
        cli.wait_online(&agent.name);
        cli.wait_device(&agent.name, "its inventory", |device| device.inventory.is_some());
    }
    run_web_script(
        &mut hub,
        "device_page.e2e.mjs",
        &[
            ("TETHER_USER", "pageadmin".into()),
            ("TETHER_PASSWORD", password.into()),
            ("TETHER_DEVICE", with_files.name.clone()),
            ("TETHER_DEVICE_ROOT", root.display().to_string()),
            ("TETHER_DOWNLOAD_TEXT", download_text),
            ("TETHER_KERNEL", uname("-r")),
            ("TETHER_ARCH", uname("-m")),
            ("TETHER_NOFILES_DEVICE", without_files.name.clone()),
        ],
    );
}
