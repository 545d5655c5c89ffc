//! Two-factor authentication, end to end, with codes computed as an authenticator app does
//! (an independent TOTP implementation): enrolment and confirmation, `tether login` asking for
//! the code, refusal of a wrong and of a replayed code, recovery codes used once, and an
//! administrator requiring 2FA of everyone.

use serde_json::Value;
use tether_e2e::{Cli, Hub};
use totp_rs::{Algorithm, Secret, TOTP};

/// The code an authenticator app shows `offset_steps` steps from now.
fn code(secret: &str, offset_steps: i64) -> String {
    let bytes = Secret::Encoded(secret.to_owned())
        .to_bytes()
        .expect("a base32 secret");
    let totp = TOTP::new(Algorithm::SHA1, 6, 1, 30, bytes).expect("a TOTP generator");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    totp.generate((now + offset_steps * 30) as u64)
}

fn json(output: &tether_e2e::CliOutput) -> Value {
    serde_json::from_str(output.ok()).unwrap_or_else(|e| panic!("not JSON ({e}):\n{output}"))
}

/// `tether login USER --password-stdin` with the password and, when given, a code on the next line.
fn login(hub: &Hub, user: &str, code: Option<&str>) -> (Cli, tether_e2e::CliOutput) {
    let cli = hub.cli();
    let mut stdin = format!("pw-{user}-correct-horse\n");
    if let Some(code) = code {
        stdin.push_str(&format!("{code}\n"));
    }
    let output = cli.run_with_stdin(&["login", user, "--password-stdin"], Some(&stdin));
    (cli, output)
}

fn enrol(cli: &Cli) -> (String, Vec<String>) {
    let enrolment = json(&cli.run(&["2fa", "enrol", "--json"]));
    let secret = enrolment["secret"].as_str().expect("a secret").to_owned();
    let uri = enrolment["otpauth_uri"].as_str().expect("a URI");
    assert!(
        uri.starts_with("otpauth://totp/Tether:") && uri.contains(&secret),
        "{uri}"
    );
    let confirmed = json(&cli.run(&["2fa", "confirm", &code(&secret, 0), "--json"]));
    let recovery: Vec<String> = confirmed["recovery_codes"]
        .as_array()
        .expect("recovery codes")
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);
    (secret, recovery)
}

#[test]
fn enrol_then_log_in_with_codes_and_recovery_codes() {
    let hub = Hub::start_default();
    let alice = hub.user_cli("alice", true);
    let bob = hub.user_cli("bob", false);
    // The interactive enrolment draws a QR code.
    let shown = bob.run(&["2fa", "enrol"]);
    assert!(
        shown.ok().contains('█') && shown.ok().contains("otpauth://totp/"),
        "{shown}"
    );
    let (secret, recovery) = enrol(&bob);

    // A password alone no longer logs in; a wrong code is refused.
    let (_, output) = login(&hub, "bob", None);
    assert!(
        !output.success() && output.stderr.contains("two-factor code required"),
        "{output}"
    );
    let wrong = if code(&secret, 0) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (_, output) = login(&hub, "bob", Some(wrong));
    assert!(
        !output.success() && output.stderr.contains("wrong two-factor code"),
        "{output}"
    );

    // A valid code logs in, once; the same code again is a replay.
    let next = code(&secret, 1);
    let (cli, output) = login(&hub, "bob", Some(&next));
    output.ok();
    cli.run(&["devices", "list"]).ok();
    let (_, output) = login(&hub, "bob", Some(&next));
    assert!(
        !output.success() && output.stderr.contains("already used"),
        "{output}"
    );

    // A recovery code works instead of a code, once.
    let (_, output) = login(&hub, "bob", Some(&recovery[0]));
    output.ok();
    let (_, output) = login(&hub, "bob", Some(&recovery[0]));
    assert!(
        !output.success() && output.stderr.contains("recovery code"),
        "{output}"
    );

    let events = json(&alice.run(&["audit", "list", "--json", "--all"]));
    let actions: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in ["2fa.enrol", "2fa.enable", "2fa.recovery_code"] {
        assert!(actions.contains(&action), "no {action} event: {actions:?}");
    }
    let failures: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "login" && e["outcome"] == "failure")
        .collect();
    assert!(
        failures.len() >= 3,
        "wrong, replayed and reused codes are failed logins: {failures:#?}"
    );
}

#[test]
fn an_administrator_can_require_two_factor_of_everyone() {
    let hub = Hub::start_default();
    let alice = hub.user_cli("alice", true);
    let refused = alice.run(&["2fa", "require"]);
    assert!(
        !refused.success() && refused.stderr.contains("enrol your own"),
        "{refused}"
    );
    enrol(&alice);
    alice.run(&["2fa", "require"]).ok();
    // Carol has no second factor: she may log in, but only to enrol.
    let carol = hub.user_cli("carol", false);
    let refused = carol.run(&["devices", "list"]);
    assert!(
        !refused.success() && refused.stderr.contains("requires two-factor"),
        "{refused}"
    );
    enrol(&carol);
    carol.run(&["devices", "list"]).ok();
    alice.run(&["2fa", "require", "--off"]).ok();
}
