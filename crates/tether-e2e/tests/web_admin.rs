//! The web UI's administration in real headless Chromium (issue #19), driven by
//! `web/tests/admin.e2e.mjs`: the Active Sessions page lists a running terminal with Watch and a
//! port forward with its kind and target (without Watch), and
//! the watched terminal says who watches until the watcher leaves; the Roles page (a custom
//! role created, a deletion cancelled then confirmed); a grant chosen from the role and scope
//! lists; an approval policy added and removed on the Access page; the header's count of
//! pending access requests follows a new request by itself and drops after a deny (cancelled
//! first, then confirmed); a disable and a device reject are confirmed first; the header offers
//! an operator neither Users, Roles, Audit nor Recordings; the skip link is the first focusable
//! element; Tab reaches every control; and axe-core finds no serious or critical violation on
//! any page. Screenshots (`sessions`, `roles`, `watched-terminal`, `users-admin`,
//! `access-admin`, at 1400×900 and 400 px) land in `target/web-screenshots/`.
//!
//! Needs what `web_ui.rs` needs: `node`, `web/node_modules`, Chromium and a hub built after
//! `npm run build`.

use tether_e2e::{
    Agent, Hub, PortForward,
    browser::{run_web_script, screenshots_dir},
    peers::{TcpEcho, echo_round_trip},
};

#[test]
fn the_web_ui_administration_is_usable_and_accessible() {
    let mut hub = Hub::start_default();
    let password = "pw-admin-correct-horse-battery";
    hub.add_user("webchief", true, password);
    let operator_password = "pw-operator-correct-horse";
    hub.add_user_with("webop", &["--role", "operator"], operator_password);
    let agent = Agent::start(
        &hub,
        "[terminal]\nshell = \"/bin/sh\"\n\n[port_forward]\nenabled = true\n",
    );
    let pending = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\n");
    let cli = hub.user_cli("setup", true);
    cli.accept(&agent.name);
    tether_e2e::wait_for("the pending device to be listed", tether_e2e::WAIT, || {
        cli.devices().iter().any(|d| d.name == pending.name).then_some(())
    });
    // A port forward carrying a connection: listed on the Sessions page with its target.
    let echo = TcpEcho::start();
    let target = format!("127.0.0.1:{}", echo.addr.port());
    let forward = PortForward::start(&cli, &agent.name, &[&format!("0:{target}")], &[]);
    echo_round_trip(forward.local_port(0), b"listed").expect("a connection through the forward");
    run_web_script(
        &mut hub,
        "admin.e2e.mjs",
        &[
            ("TETHER_USER", "webchief".into()),
            ("TETHER_PASSWORD", password.into()),
            ("TETHER_OPERATOR", "webop".into()),
            ("TETHER_OPERATOR_PASSWORD", operator_password.into()),
            ("TETHER_DEVICE", agent.name.clone()),
            ("TETHER_PENDING_DEVICE", pending.name.clone()),
            ("TETHER_FORWARD_TARGET", target),
        ],
    );
    let screenshots = screenshots_dir();
    for page in [
        "sessions",
        "roles",
        "watched-terminal",
        "users-admin",
        "access-admin",
    ] {
        for name in [format!("{page}.png"), format!("{page}-400.png")] {
            assert!(screenshots.join(&name).is_file(), "screenshot {name} missing");
        }
    }
}
