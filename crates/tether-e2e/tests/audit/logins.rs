//! Logins, logouts, bad tokens and refused permissions as audit events.

use tether_e2e::{HubOptions, PtySession, WAIT};

use crate::common::*;

#[test]
fn a_login_is_one_success_event_with_the_user_and_origin() {
    let (_hub, cli) = hub_and_admin(HubOptions::default());
    let event = exactly_one(&cli, &["--action", "login"]);
    assert_user_actor(&event, "alice");
    assert_eq!(event["outcome"], "success");
    assert_eq!(event["object_kind"], "user");
    assert_eq!(event["object_name"], "alice");
    assert_eq!(event["object_id"], event["actor_id"]);
    assert!(event["session_id"].is_null(), "{event:#}");
    assert_origin(&event);
    assert_cli_agent(&event);
    assert!(event["hash"].as_str().is_some_and(|h| !h.is_empty()));

    // The filters of `audit list` find it, or not.
    let id = event["actor_id"].as_str().unwrap();
    for (args, count) in [
        (vec!["--actor", "alice", "--action", "login"], 1),
        (vec!["--actor", id, "--action", "login"], 1),
        (vec!["--actor", "nobody-else"], 0),
        (vec!["--outcome", "failure"], 0),
    ] {
        assert_eq!(events(&cli, &args).len(), count, "audit list {args:?}");
    }

    // The table: a header and one row, time in UTC.
    let table = cli.run(&["audit", "list", "--action", "login"]);
    let lines: Vec<&str> = table.ok().lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    for column in ["TIME", "ACTOR", "ACTION", "OBJECT", "OUTCOME", "DETAILS"] {
        assert!(lines[0].contains(column), "{table}");
    }
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[2..6], ["alice", "login", "alice", "success"], "{table}");
    assert_eq!(row[0].len(), "2024-05-01".len(), "{table}");
    assert_eq!(row[1].len(), "12:00:00".len(), "{table}");
}

#[test]
fn the_table_cuts_details_to_the_terminal_width() {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    let output = hub
        .cli()
        .run_with_stdin(&["login", "alice", "--password-stdin"], Some("wrong\n"));
    assert_eq!(output.code, Some(1), "{output}");
    let full = cli.run(&["audit", "list", "--outcome", "failure"]);
    assert!(full.ok().contains("reason=\"wrong password\""), "{full}");

    let mut terminal = PtySession::spawn(&cli, &["audit", "list", "--outcome", "failure"], 24, 60);
    terminal.expect_exit(WAIT);
    let shown = terminal.output();
    let row = shown
        .lines()
        .find(|line| line.contains("failure"))
        .unwrap_or_else(|| panic!("no row: {shown}"));
    assert!(
        row.trim_end().ends_with('…'),
        "DETAILS should be cut on a 60-column tty: {shown}"
    );
    assert!(!row.contains("wrong password"), "{shown}");
}

#[test]
fn failed_logins_are_failure_events_with_the_reason() {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    let alice = user_id(&cli, "alice");
    let stranger = hub.cli();
    let output = stranger.run_with_stdin(&["login", "alice", "--password-stdin"], Some("wrong\n"));
    assert_eq!(output.code, Some(1), "{output}");

    let event = exactly_one(&cli, &["--action", "login", "--outcome", "failure"]);
    assert_eq!(event["actor_kind"], "anonymous", "{event:#}");
    assert!(event["actor_name"].is_null(), "{event:#}");
    assert_eq!(event["object_kind"], "user");
    assert_eq!(event["object_name"], "alice");
    assert_eq!(event["object_id"], alice.as_str());
    assert_eq!(event["details"]["reason"], "wrong password", "{event:#}");
    assert_origin(&event);
    assert_cli_agent(&event);

    // An unknown user: the name tried, no id.
    let output = stranger.run_with_stdin(&["login", "mallory", "--password-stdin"], Some("guess\n"));
    assert_eq!(output.code, Some(1), "{output}");
    let failures = events(&cli, &["--action", "login", "--outcome", "failure"]);
    assert_eq!(failures.len(), 2, "{}", pretty(&failures));
    let newest = &failures[0];
    assert_eq!(newest["object_name"], "mallory", "{newest:#}");
    assert!(newest["object_id"].is_null(), "{newest:#}");
    assert_eq!(newest["details"]["reason"], "unknown user", "{newest:#}");
}

#[test]
fn a_rate_limited_login_is_a_refused_event() {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    hub.add_user("bob", false, "bob-password-correct");
    let stranger = hub.cli();
    let mut failures = 0;
    let mut refused = false;
    for _ in 0..20 {
        let output = stranger.run_with_stdin(&["login", "bob", "--password-stdin"], Some("wrong\n"));
        assert_eq!(output.code, Some(1), "{output}");
        if output.stderr.contains("too many failed logins") {
            refused = true;
            break;
        }
        failures += 1;
    }
    assert!(refused, "20 bad logins were never rate limited");

    let event = exactly_one(&cli, &["--action", "login", "--outcome", "refused"]);
    assert_eq!(event["actor_kind"], "anonymous", "{event:#}");
    assert_eq!(event["object_name"], "bob", "{event:#}");
    assert_eq!(
        event["details"]["reason"], "too many failed logins for this account from your address",
        "{event:#}"
    );
    assert_origin(&event);
    let recorded = events(&cli, &["--action", "login", "--outcome", "failure"]);
    assert_eq!(recorded.len(), failures, "{}", pretty(&recorded));
}

#[test]
fn a_logout_is_one_event() {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    let bob = hub.user_cli("bob", false);
    bob.run(&["logout"]).ok();

    let event = exactly_one(&cli, &["--action", "logout"]);
    assert_user_actor(&event, "bob");
    assert_eq!(event["outcome"], "success");
    assert_eq!(event["object_kind"], "user");
    assert_eq!(event["object_name"], "bob");
    assert_eq!(event["object_id"], event["actor_id"]);
    assert_origin(&event);
    assert_cli_agent(&event);
}

#[test]
fn bad_and_missing_tokens_are_refused_authentications() {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    let mut forger = hub.cli();
    forger.set_env("TETHER_TOKEN", "not-a-real-token");
    let output = forger.run(&["devices", "list"]);
    assert_eq!(output.code, Some(1), "{output}");

    let event = exactly_one(&cli, &["--action", "authentication"]);
    assert_eq!(event["actor_kind"], "anonymous", "{event:#}");
    assert_eq!(event["outcome"], "refused");
    assert_eq!(
        event["details"]["reason"], "invalid or expired token",
        "{event:#}"
    );
    assert_eq!(
        event["details"]["path"], "/api/management/v1/devices",
        "{event:#}"
    );
    assert_origin(&event);
    assert_cli_agent(&event);

    // No token at all.
    let (status, _) = hub.request("GET", "/api/management/v1/devices", &[], b"");
    assert_eq!(status, 401);
    let both = events(&cli, &["--action", "authentication"]);
    assert_eq!(both.len(), 2, "{}", pretty(&both));
    assert_eq!(
        both[0]["details"]["reason"], "missing bearer token",
        "{:#}",
        both[0]
    );
}

#[test]
fn a_non_admin_accepting_a_device_is_a_refused_authorization() {
    let (hub, cli) = hub_and_admin(HubOptions::default());
    let device = pending_device(&hub);
    let id = cli.device_id_by_name(&device.name);
    let bob = hub.user_cli("bob", false);
    let output = bob.run(&["devices", "accept", &device.name]);
    assert_eq!(output.code, Some(1), "{output}");
    assert!(output.stderr.contains("403"), "{output}");

    let event = exactly_one(&cli, &["--action", "authorization"]);
    assert_user_actor(&event, "bob");
    assert_eq!(event["outcome"], "refused");
    assert_device_object(&event, &id, &device.name);
    assert_eq!(event["details"]["permission"], "manage devices", "{event:#}");
    assert_origin(&event);
    assert_cli_agent(&event);
    // Nothing was accepted.
    assert!(events(&cli, &["--action", "device.accept"]).is_empty());
    assert_eq!(cli.device(&device.name).unwrap().status, "pending");
}
