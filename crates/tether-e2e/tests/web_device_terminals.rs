//! The device page's terminal tabs and detached shells (issue 19) in real headless Chromium,
//! driven by `web/tests/device_terminals.e2e.mjs`: a real hub allowing two sessions per user,
//! a real agent, and a real `tether terminal` of the same operator that is killed first,
//! leaving its shell detached on the device. The script checks two tabs with their own output,
//! the arrow keys, the close question, the hub's session limit said in the refused tab, the detached
//! shell listed and re-attached with its earlier output, Detach (listed again, re-attached
//! again), axe-core, and the screenshots
//! `device-terminals` and `device-detached`. Afterwards the hub's log must hold no refusal
//! warnings from the detached list the page asks for every 15 s.
//!
//! Needs `node`, `web/node_modules`, Chromium and a hub built after `npm run build`.

use std::time::Duration;

use tether_e2e::{Agent, Hub, HubOptions, PtySession, browser::run_web_script, wait_for};

const LONG: Duration = Duration::from_secs(60);

#[test]
fn the_device_page_has_terminal_tabs_and_re_attaches_detached_shells() {
    // Two sessions per user: a third tab is refused by the hub. (The agent's own limit is no
    // test of the tab: a full agent makes room by ending the user's detached shell.)
    let mut hub = Hub::start(HubOptions::default().config("max_sessions_per_user = 2"));
    let admin = hub.user_cli("tabsadmin", true);
    // The page's user is an operator: no right to see everyone's sessions, so the detached list
    // is their own (and its permission check must stay out of the log).
    let operator = hub.user_cli("tabsoperator", false);
    let agent = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\n");
    admin.accept(&agent.name);
    admin.wait_online(&agent.name);

    // The operator's `tether terminal` dies without a word (SIGKILL): its shell stays detached.
    let terminal = PtySession::terminal(&operator, &agent.name);
    terminal.expect("Escape", LONG);
    // Computed by the shell: the echoed command line never matches what is looked for.
    terminal.send("echo cli-said-$((70+7))\r");
    terminal.expect("cli-said-77", LONG);
    drop(terminal);
    wait_for(
        "the killed terminal's shell to be listed as detached",
        LONG,
        || {
            let listing = operator.run(&["sessions", "detached", "--json"]);
            listing.ok().contains(&agent.name).then_some(())
        },
    );

    run_web_script(
        &mut hub,
        "device_terminals.e2e.mjs",
        &[
            ("TETHER_USER", "tabsoperator".into()),
            ("TETHER_PASSWORD", "pw-tabsoperator-correct-horse".into()),
            ("TETHER_DEVICE", agent.name.clone()),
            ("TETHER_DETACHED_OUTPUT", "cli-said-77".into()),
        ],
    );

    let log = hub.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("tabsoperator"))
        .filter(|line| line.contains("may not"))
        .collect();
    assert!(
        warnings.is_empty(),
        "the page's requests filled the hub log with refusals:\n{}",
        warnings.join("\n")
    );
}
