//! Terminals (exec, refused shells) as audit events, with the CLI as their user agent.

use tether_e2e::{PtySession, WAIT};

use crate::common::*;

#[test]
fn an_exec_opens_and_closes_a_terminal_in_one_session() {
    let (_hub, cli, agent) = with_agent(SHELL);
    let id = cli.device_id_by_name(&agent.name);
    cli.exec_when_ready(&agent.name, &["true"], WAIT).ok();

    let open = exactly_one(&cli, &["--action", "terminal.open"]);
    assert_user_actor(&open, "alice");
    assert_device_object(&open, &id, &agent.name);
    assert_eq!(open["outcome"], "success");
    assert_eq!(open["details"]["command"], "true", "{open:#}");
    assert_origin(&open);
    let session = open["session_id"]
        .as_str()
        .expect("terminal.open has a session_id");

    let close = exactly_one(&cli, &["--action", "terminal.close"]);
    assert_user_actor(&close, "alice");
    assert_device_object(&close, &id, &agent.name);
    assert_eq!(close["outcome"], "success");
    assert_eq!(
        close["session_id"], session,
        "open and close in different sessions"
    );
    let details = &close["details"];
    for key in ["duration_ms", "bytes_in", "bytes_out"] {
        assert!(details[key].is_u64(), "details.{key}: {close:#}");
    }
    assert!(details["reason"].is_string(), "{close:#}");
    assert_eq!(details["exit_status"], 0, "{close:#}");
    assert_origin(&close);

    // `--session` finds both, newest first.
    let in_session = events(&cli, &["--session", session]);
    let actions: Vec<&str> = in_session.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        ["terminal.close", "terminal.open"],
        "{}",
        pretty(&in_session)
    );
}

#[test]
fn a_shell_beyond_the_limit_is_a_refused_terminal_open() {
    // `max_sessions = 0` is refused by the agent's configuration check: hold the one allowed.
    let (_hub, cli, agent) = with_agent(&format!("{SHELL}max_sessions = 1\n"));
    let id = cli.device_id_by_name(&agent.name);
    let terminal = PtySession::terminal(&cli, &agent.name);
    terminal.send_line("echo held-$((40+2))");
    terminal.expect("held-42", WAIT);

    let output = cli.exec(&agent.name, &["true"]);
    assert!(!output.success(), "a second shell was allowed: {output}");

    let event = exactly_one(&cli, &["--action", "terminal.open", "--outcome", "refused"]);
    assert_user_actor(&event, "alice");
    assert_device_object(&event, &id, &agent.name);
    let reason = event["details"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("max_sessions"),
        "the limit should be named: {event:#}"
    );
    assert!(event["session_id"].is_string(), "{event:#}");
    assert_origin(&event);
    // The held shell is the only successful open, and no close was recorded for the refusal.
    assert_eq!(
        events(&cli, &["--action", "terminal.open", "--outcome", "success"]).len(),
        1
    );
    assert!(events(&cli, &["--action", "terminal.close"]).is_empty());
    drop(terminal);
}

#[test]
fn session_events_carry_the_cli_user_agent() {
    // Fails while the CLI's WebSocket upgrade (tether_net::connect_websocket, used by
    // terminal, exec, cp, ls and port-forward) sends no User-Agent: session events then have
    // `user_agent: null`, unlike the CLI's HTTP requests ("tether/VERSION").
    let (_hub, cli, agent) = with_agent(SHELL);
    cli.exec_when_ready(&agent.name, &["true"], WAIT).ok();
    let open = exactly_one(&cli, &["--action", "terminal.open"]);
    assert_cli_agent(&open);
}
