//! Access control, end to end: personal access tokens do exactly what they name, and revoking
//! one refuses it at once (also on an open terminal); disabling a user or revoking their
//! sessions ends their live terminals and their logins; changing a password ends the other login
//! sessions; every one of these actions is one audit event.

use std::time::{Duration, Instant};

use serde_json::Value;
use tether_e2e::{Agent, Cli, FakeDevice, Hub, PtySession, WAIT, wait_for};

const SHELL: &str = "[terminal]\nshell = \"/bin/sh\"\n";

const LONG: Duration = Duration::from_secs(20);

/// The bound for "at once": generous, because the machine may be loaded.
const AT_ONCE: Duration = Duration::from_secs(5);

/// The password `Hub::user_cli` gives the user `name`.
fn password_of(name: &str) -> String {
    format!("pw-{name}-correct-horse")
}

/// A hub, its administrator `alice` (logged in) and an accepted, online agent.
fn hub_with_agent() -> (Hub, Cli, Agent) {
    let hub = Hub::start_default();
    let alice = hub.user_cli("alice", true);
    let agent = Agent::start(&hub, SHELL);
    alice.accept(&agent.name);
    (hub, alice, agent)
}

/// `tether tokens create --name NAME --permission P... --json` as `cli`; returns (token, id).
fn create_token(cli: &Cli, name: &str, permissions: &[&str]) -> (String, String) {
    let mut args = vec!["tokens", "create", "--name", name, "--json"];
    for permission in permissions {
        args.extend(["--permission", permission]);
    }
    let output = cli.run(&args);
    let created: Value = serde_json::from_str(output.ok())
        .unwrap_or_else(|e| panic!("`tokens create --json` is not JSON: {e}\n{output}"));
    let token = created["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {output}"));
    assert!(token.starts_with("ttp_"), "tokens start with ttp_: {output}");
    let id = created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id: {output}"));
    (token.to_owned(), id.to_owned())
}

/// A CLI with no stored login that presents `token` (`TETHER_TOKEN`).
fn token_cli(hub: &Hub, token: &str) -> Cli {
    let mut cli = hub.cli();
    cli.set_env("TETHER_TOKEN", token);
    cli
}

/// `tether audit list --json --all ARGS`, parsed.
fn events(cli: &Cli, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "list", "--json", "--all"];
    all.extend_from_slice(args);
    let output = cli.run(&all);
    serde_json::from_str(output.ok())
        .unwrap_or_else(|e| panic!("`audit list --json` is not a JSON array: {e}\n{output}"))
}

/// Waits until the action `action` has exactly `count` successful events, and returns them.
fn expect_events(cli: &Cli, action: &str, count: usize) -> Vec<Value> {
    let filter = ["--action", action, "--outcome", "success"];
    wait_for(&format!("an audit event {action}"), WAIT, || {
        Some(events(cli, &filter)).filter(|e| e.len() >= count)
    });
    let found = events(cli, &filter);
    assert_eq!(
        found.len(),
        count,
        "expected {count} {action} event(s), got:\n{}",
        serde_json::to_string_pretty(&found).unwrap_or_default()
    );
    found
}

fn assert_actor(event: &Value, name: &str) {
    assert_eq!(event["actor_kind"], "user", "{event:#}");
    assert_eq!(event["actor_name"], name, "{event:#}");
    assert_eq!(event["outcome"], "success", "{event:#}");
}

/// Fails unless `output` is a refusal with HTTP `status`.
fn assert_refused(output: &tether_e2e::CliOutput, status: u16) {
    assert!(!output.success(), "expected a refusal (HTTP {status}):\n{output}");
    assert!(
        output.stderr.contains(&format!("HTTP {status}")),
        "expected HTTP {status}:\n{output}"
    );
}

fn marker() -> (String, String) {
    let n: u32 = rand::random::<u32>() % 1_000_000 + 1000;
    (format!("echo mark-$(({n}+1))"), format!("mark-{}", n + 1))
}

fn open_working_terminal(cli: &Cli, device: &str) -> PtySession {
    let terminal = PtySession::terminal(cli, device);
    let (command, expected) = marker();
    terminal.send_line(&command);
    terminal.expect(&expected, LONG);
    terminal
}

/// Waits for the terminal to end within [`AT_ONCE`] of `since`; asserts the CLI exited non-zero
/// and returns what the terminal showed after the last marker.
fn expect_ended_at_once(terminal: &mut PtySession, since: Instant, what: &str) -> String {
    let status = terminal.wait_exit(LONG);
    let took = since.elapsed();
    let status = status.unwrap_or_else(|| {
        panic!(
            "the terminal is still open {LONG:?} after {what}:\n{}",
            terminal.output()
        )
    });
    assert!(
        took <= AT_ONCE,
        "the terminal should end at once after {what} (bound {AT_ONCE:?}), took {took:?}"
    );
    terminal.expect_exit(LONG);
    assert!(
        !status.success(),
        "an ended terminal must exit non-zero ({status})"
    );
    let message = terminal.pending_output();
    eprintln!("after {what} ({took:?}), {status}; the terminal showed: {message:?}");
    assert!(
        message.contains("tether:"),
        "the CLI should say why the terminal ended:\n{message}"
    );
    message
}

// ---------------------------------------------------------------------------------------------
// Tokens

#[test]
fn a_scoped_token_can_do_exactly_its_scope() {
    let (hub, alice, agent) = hub_with_agent();
    let pending = FakeDevice::new(&hub);
    let (status, body) = pending.authenticate(None);
    assert_eq!(status, 401, "a new device should be pending: {body}");
    alice.device_id_by_name(&pending.name);

    let (viewer_token, _) = create_token(&alice, "viewer", &["view_devices"]);
    let viewer = token_cli(&hub, &viewer_token);
    let listing = viewer.run(&["devices", "list"]);
    assert!(listing.ok().contains(&agent.name), "{listing}");

    let refused = viewer.exec(&agent.name, &["echo", "should-not-run"]);
    assert_refused(&refused, 403);
    assert!(!refused.stdout.contains("should-not-run"), "{refused}");
    let refusals = wait_for("the exec refusal in the audit log", WAIT, || {
        let found = events(
            &alice,
            &[
                "--action",
                "authorization",
                "--outcome",
                "refused",
                "--actor",
                "alice",
            ],
        );
        (!found.is_empty()).then_some(found)
    });
    assert_eq!(refusals.len(), 1, "{refusals:#?}");
    assert!(
        refusals[0]["details"].to_string().contains("terminal"),
        "the refusal should name the terminal permission: {:#}",
        refusals[0]
    );

    assert_refused(&viewer.run(&["devices", "accept", &pending.name]), 403);
    assert_eq!(alice.device(&pending.name).unwrap().status, "pending");
    // A token cannot make tokens.
    assert_refused(&viewer.run(&["tokens", "create", "--name", "child"]), 403);

    let (operator_token, _) = create_token(&alice, "operator", &["terminal", "view_devices"]);
    let operator = token_cli(&hub, &operator_token);
    let output = operator.exec(&agent.name, &["echo", "ran-with-a-token"]);
    assert!(output.ok().contains("ran-with-a-token"), "{output}");
    // Still nothing beyond its scope.
    assert_refused(&operator.run(&["devices", "accept", &pending.name]), 403);

    let created = expect_events(&alice, "token.create", 2);
    for event in &created {
        assert_actor(event, "alice");
    }
    // More refusals: at least the viewer's accept and the operator's accept.
    let all_refusals = events(
        &alice,
        &[
            "--action",
            "authorization",
            "--outcome",
            "refused",
            "--actor",
            "alice",
        ],
    );
    assert!(all_refusals.len() >= 3, "{all_refusals:#?}");
}

#[test]
fn token_create_prints_the_token_once_and_list_shows_it() {
    let hub = Hub::start_default();
    let alice = hub.user_cli("alice", true);
    let output = alice.run(&[
        "tokens",
        "create",
        "--name",
        "plain",
        "--permission",
        "view_devices",
        "--expires",
        "12h",
    ]);
    let text = output.ok();
    let token_line = text
        .lines()
        .find(|line| line.starts_with("Token: "))
        .unwrap_or_else(|| panic!("no `Token:` line:\n{output}"));
    let token = token_line.trim_start_matches("Token: ").trim();
    assert!(token.starts_with("ttp_"), "{output}");
    let id = text
        .lines()
        .find_map(|line| line.strip_prefix("Id: "))
        .unwrap_or_else(|| panic!("no `Id:` line:\n{output}"))
        .trim();
    assert!(text.contains("Expires: "), "{output}");
    assert!(
        output.stderr.contains("only"),
        "the secret is shown once:\n{output}"
    );

    let listed: Value = serde_json::from_str(alice.run(&["tokens", "list", "--json"]).ok()).unwrap();
    let entry = listed
        .as_array()
        .and_then(|tokens| tokens.iter().find(|t| t["id"] == id))
        .unwrap_or_else(|| panic!("token {id} not listed: {listed:#}"));
    assert_eq!(entry["name"], "plain");
    assert_eq!(entry["revoked"], false);
    assert!(
        !entry.to_string().contains(token),
        "the list must not show the secret: {entry:#}"
    );
    let expires_at = entry["expires_at"].as_i64().expect("expires_at");
    let created_at = entry["created_at"].as_i64().expect("created_at");
    let lifetime = expires_at - created_at;
    assert!(
        (12 * 3600 - 60..=12 * 3600 + 60).contains(&lifetime),
        "--expires 12h gave a lifetime of {lifetime}s: {entry:#}"
    );

    let table = alice.run(&["tokens", "list"]);
    let text = table.ok();
    assert!(text.starts_with("ID "), "{table}");
    assert!(text.contains("LAST USED") && text.contains("STATE"), "{table}");
    assert!(text.contains(id) && text.contains("active"), "{table}");

    token_cli(&hub, token).run(&["devices", "list"]).ok();
}

#[test]
fn a_revoked_token_is_refused_at_once() {
    let hub = Hub::start_default();
    let alice = hub.user_cli("alice", true);
    let (token, id) = create_token(&alice, "short-lived", &["view_devices"]);
    let holder = token_cli(&hub, &token);
    holder.run(&["devices", "list"]).ok();

    let output = alice.run(&["tokens", "revoke", &id]);
    assert!(output.ok().contains(&id), "{output}");
    assert_refused(&holder.run(&["devices", "list"]), 401);
    let authorization = format!("Bearer {token}");
    let (status, body) = hub.request(
        "GET",
        "/api/management/v1/devices",
        &[("Authorization", authorization.as_str())],
        b"",
    );
    assert_eq!(status, 401, "a revoked token must be refused: {body}");

    let listed: Value = serde_json::from_str(alice.run(&["tokens", "list", "--json"]).ok()).unwrap();
    let entry = listed
        .as_array()
        .and_then(|tokens| tokens.iter().find(|t| t["id"] == id.as_str()))
        .unwrap_or_else(|| panic!("token {id} not listed: {listed:#}"));
    assert_eq!(entry["revoked"], true, "{entry:#}");
    assert!(alice.run(&["tokens", "list"]).ok().contains("revoked"));

    let revoked = expect_events(&alice, "token.revoke", 1);
    assert_actor(&revoked[0], "alice");
}

#[test]
fn revoking_a_token_ends_its_open_terminal() {
    let (hub, alice, agent) = hub_with_agent();
    let (token, id) = create_token(&alice, "terminal", &["view_devices", "terminal"]);
    let holder = token_cli(&hub, &token);
    let mut terminal = open_working_terminal(&holder, &agent.name);

    alice.run(&["tokens", "revoke", &id]).ok();
    let message = expect_ended_at_once(&mut terminal, Instant::now(), "the token was revoked");
    assert!(
        message.contains("revoked"),
        "the CLI should say the access was revoked:\n{message}"
    );
    assert_refused(&holder.exec(&agent.name, &["true"]), 401);
    // The administrator's own access is untouched.
    alice.exec(&agent.name, &["true"]).ok();
    expect_events(&alice, "token.revoke", 1);
}

// ---------------------------------------------------------------------------------------------
// Users

#[test]
fn adding_and_listing_users() {
    let hub = Hub::start_default();
    let alice = hub.user_cli("alice", true);
    let output = alice.run_with_stdin(
        &["users", "add", "carol", "--role", "operator", "--password-stdin"],
        Some("carol-secret-1\n"),
    );
    output.ok();
    hub.cli().login("carol", "carol-secret-1");

    let duplicate = alice.run_with_stdin(
        &["users", "add", "carol", "--role", "operator", "--password-stdin"],
        Some("other-pw\n"),
    );
    assert_refused(&duplicate, 409);

    let users: Value = serde_json::from_str(alice.run(&["users", "list", "--json"]).ok()).unwrap();
    let carol = users
        .as_array()
        .and_then(|users| users.iter().find(|u| u["name"] == "carol"))
        .unwrap_or_else(|| panic!("carol not listed: {users:#}"));
    assert_eq!(carol["admin"], false, "{carol:#}");
    assert_eq!(carol["disabled"], false, "{carol:#}");
    let table = alice.run(&["users", "list"]);
    assert!(
        table.ok().contains("carol") && table.ok().contains("alice"),
        "{table}"
    );

    // Only users with manage_users administer users.
    let bob = hub.user_cli("bob", false);
    assert_refused(&bob.run(&["users", "list"]), 403);
    assert_refused(
        &bob.run_with_stdin(
            &["users", "add", "mallory", "--role", "admin", "--password-stdin"],
            Some("pw-mallory\n"),
        ),
        403,
    );

    let created = expect_events(&alice, "user.create", 1);
    assert_actor(&created[0], "alice");
}

#[test]
fn disabling_a_user_ends_their_terminal_and_their_logins() {
    let (hub, alice, agent) = hub_with_agent();
    let bob = hub.user_cli("bob", false);
    let (bob_token, _) = create_token(&bob, "bob-ci", &["view_devices"]);
    let mut terminal = open_working_terminal(&bob, &agent.name);

    alice.run(&["users", "disable", "bob"]).ok();
    expect_ended_at_once(&mut terminal, Instant::now(), "the user was disabled");

    assert_refused(&bob.run(&["devices", "list"]), 401);
    assert!(
        !token_cli(&hub, &bob_token).run(&["devices", "list"]).success(),
        "a disabled user's token must stop working"
    );
    let login = hub.cli().run_with_stdin(
        &["login", "bob", "--password-stdin"],
        Some(&format!("{}\n", password_of("bob"))),
    );
    assert!(!login.success(), "a disabled user must not log in:\n{login}");
    let users: Value = serde_json::from_str(alice.run(&["users", "list", "--json"]).ok()).unwrap();
    let listed = users
        .as_array()
        .and_then(|users| users.iter().find(|u| u["name"] == "bob"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(listed["disabled"], true, "{users:#}");

    alice.run(&["users", "enable", "bob"]).ok();
    let again = hub.cli();
    again.login("bob", &password_of("bob"));
    again.run(&["devices", "list"]).ok();

    assert_actor(&expect_events(&alice, "user.disable", 1)[0], "alice");
    assert_actor(&expect_events(&alice, "user.enable", 1)[0], "alice");
}

#[test]
fn revoking_sessions_ends_the_terminal_and_logins_but_not_tokens() {
    let (hub, alice, agent) = hub_with_agent();
    let bob = hub.user_cli("bob", false);
    let (bob_token, _) = create_token(&bob, "bob-ci", &["view_devices", "terminal"]);
    let mut terminal = open_working_terminal(&bob, &agent.name);

    let output = alice.run(&["users", "revoke-sessions", "bob"]);
    let since = Instant::now();
    assert!(output.ok().contains("Revoked"), "{output}");
    expect_ended_at_once(&mut terminal, since, "bob's sessions were revoked");

    assert_refused(&bob.run(&["devices", "list"]), 401);
    let holder = token_cli(&hub, &bob_token);
    holder.run(&["devices", "list"]).ok();
    assert!(
        holder
            .exec(&agent.name, &["echo", "token-ok"])
            .ok()
            .contains("token-ok")
    );
    // Bob can log in again.
    bob.login("bob", &password_of("bob"));
    bob.run(&["devices", "list"]).ok();

    assert_actor(&expect_events(&alice, "user.revoke_sessions", 1)[0], "alice");
}

#[test]
fn changing_the_password_ends_the_other_logins() {
    let hub = Hub::start_default();
    let alice = hub.user_cli("alice", true);
    let bob = hub.user_cli("bob", false);
    let other = hub.cli();
    other.login("bob", &password_of("bob"));
    other.run(&["devices", "list"]).ok();

    // The current password must be right.
    let wrong = bob.run_with_stdin(
        &["passwd", "--password-stdin"],
        Some("not-the-password\nnew-password-2\n"),
    );
    assert!(
        !wrong.success(),
        "a wrong current password must be refused:\n{wrong}"
    );
    other.run(&["devices", "list"]).ok();

    let output = bob.run_with_stdin(
        &["passwd", "--password-stdin"],
        Some(&format!("{}\nnew-password-2\n", password_of("bob"))),
    );
    output.ok();
    // The session that changed it stays; the other one ends.
    bob.run(&["devices", "list"]).ok();
    assert_refused(&other.run(&["devices", "list"]), 401);

    let old = hub.cli().run_with_stdin(
        &["login", "bob", "--password-stdin"],
        Some(&format!("{}\n", password_of("bob"))),
    );
    assert!(!old.success(), "the old password must no longer log in:\n{old}");
    hub.cli().login("bob", "new-password-2");

    // A token cannot change the password.
    let (token, _) = create_token(&bob, "bob-ci", &["view_devices"]);
    let holder = token_cli(&hub, &token);
    let refused = holder.run_with_stdin(
        &["passwd", "--password-stdin"],
        Some("new-password-2\nthird-password-3\n"),
    );
    assert!(
        !refused.success(),
        "a token must not change the password:\n{refused}"
    );

    let changed = expect_events(&alice, "password.change", 1);
    assert_eq!(changed[0]["actor_name"], "bob", "{:#}", changed[0]);
}
