//! Login throttling against real clients on several loopback source addresses (127.0.0.2 ...):
//! wrong passwords from many addresses slow those addresses down but never lock the owner out;
//! spraying unknown names does not reset an attacker's bucket; a user with two-factor
//! authentication is not locked by password failures, while wrong and replayed codes are
//! throttled; throttled attempts are audited.

use std::net::IpAddr;

use serde_json::Value;
use tether_e2e::{Cli, Hub, HubOptions, source_address::login_from};
use totp_rs::{Algorithm, Secret, TOTP};

/// A window of an hour: buckets refill slowly enough that no forgiven failure shows up in a test
/// on a slow machine (the default limits stay: 5 per account and address, 20 per address).
fn slow_refill() -> HubOptions {
    HubOptions::default().config("login_failure_window_secs = 3600")
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

fn error_of(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    value["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no `error` in {body}"))
        .to_owned()
}

fn events(cli: &Cli, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "list", "--json", "--all"];
    all.extend_from_slice(args);
    let output = cli.run(&all);
    serde_json::from_str(output.ok()).unwrap_or_else(|e| panic!("not a JSON array: {e}\n{output}"))
}

/// Wrong passwords for `user` from `address` until the hub throttles; returns the statuses.
fn guess_until_throttled(hub: &Hub, address: IpAddr, user: &str, limit: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for attempt in 0..limit {
        let (status, body) = login_from(hub, address, user, &format!("wrong-{attempt}"), None);
        statuses.push(status);
        assert!(status == 401 || status == 429, "{status} {body}");
        if status == 429 {
            break;
        }
    }
    statuses
}

#[test]
fn wrong_passwords_from_many_addresses_never_lock_the_owner_out() {
    let hub = Hub::start(slow_refill());
    let admin = hub.user_cli("admin", true);
    let password = "pw-admin-correct-horse";
    hub.add_user("carol", false, "carol-password-right");

    for last in 2..=9 {
        let statuses = guess_until_throttled(&hub, loopback(last), "carol", 10);
        // Five failures per account from one address (the default), then that address is slowed.
        assert_eq!(statuses, [401, 401, 401, 401, 401, 429], "from 127.0.0.{last}");
    }
    // An attacking address stays throttled for that account, even with the right password.
    let (status, body) = login_from(&hub, loopback(2), "carol", "carol-password-right", None);
    assert_eq!(status, 429, "{body}");
    assert!(error_of(&body).contains("from your address"), "{body}");

    // The owner, from an address that has not failed, gets in at once.
    let (status, body) = login_from(&hub, loopback(10), "carol", "carol-password-right", None);
    assert_eq!(status, 200, "the owner was locked out: {body}");
    let (status, body) = login_from(&hub, loopback(11), "admin", password, None);
    assert_eq!(status, 200, "{body}");

    // Every failure and every throttled attempt is in the audit log, with its address.
    let failures = events(&admin, &["--action", "login", "--outcome", "failure"]);
    assert_eq!(failures.len(), 8 * 5, "{failures:#?}");
    let refused = events(&admin, &["--action", "login", "--outcome", "refused"]);
    assert_eq!(refused.len(), 8 + 1, "{refused:#?}");
    for event in &refused {
        assert_eq!(event["object_name"], "carol", "{event:#}");
        assert_eq!(
            event["details"]["reason"], "too many failed logins for this account from your address",
            "{event:#}"
        );
        let address = event["client_address"].as_str().unwrap_or_default();
        assert!(address.starts_with("127.0.0."), "{event:#}");
    }
    assert!(!hub.log().contains("panicked"), "{}", hub.log());
}

#[test]
fn spraying_unknown_names_does_not_reset_an_attackers_bucket() {
    // A small table, so that the spray overflows it many times over.
    let hub = Hub::start(slow_refill().config("login_throttle_capacity = 16"));
    hub.add_user("carol", false, "carol-password-right");
    let attacker = loopback(2);
    assert_eq!(
        guess_until_throttled(&hub, attacker, "carol", 10),
        [401, 401, 401, 401, 401, 429]
    );

    // Other addresses spray unknown names: 7 x 20 new (name, address) buckets.
    for last in 3..=9 {
        for n in 0..20 {
            let (status, body) = login_from(&hub, loopback(last), &format!("nobody-{last}-{n}"), "x", None);
            assert_eq!(status, 401, "{body}");
        }
        // Twenty failures from one address, whatever the names: that address is slowed too.
        let (status, body) = login_from(&hub, loopback(last), "carol", "x", None);
        assert_eq!(status, 429, "{body}");
        assert!(error_of(&body).contains("your address"), "{body}");
    }

    // The attacker is still throttled: the spray evicted the sprayers' buckets, not theirs.
    let (status, body) = login_from(&hub, attacker, "carol", "another-guess", None);
    assert_eq!(status, 429, "the spray reset the attacker's bucket: {body}");
    // And the owner still gets in.
    let (status, body) = login_from(&hub, loopback(10), "carol", "carol-password-right", None);
    assert_eq!(status, 200, "{body}");
}

/// The code an authenticator app shows `offset_steps` steps from now.
fn totp(secret: &str, offset_steps: u64) -> String {
    let bytes = Secret::Encoded(secret.to_owned()).to_bytes().expect("base32");
    let totp = TOTP::new(Algorithm::SHA1, 6, 1, 30, bytes).expect("TOTP");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    totp.generate(now + offset_steps * 30)
}

fn json(output: &tether_e2e::CliOutput) -> Value {
    serde_json::from_str(output.ok()).unwrap_or_else(|e| panic!("not JSON ({e}):\n{output}"))
}

#[test]
fn a_two_factor_user_is_not_locked_by_password_failures_but_codes_are_throttled() {
    let hub = Hub::start(slow_refill().config("login_code_failures_per_account = 3"));
    let admin = hub.user_cli("admin", true);
    let bob = hub.user_cli("bob", false);
    let password = "pw-bob-correct-horse";
    let secret = json(&bob.run(&["2fa", "enrol", "--json"]))["secret"]
        .as_str()
        .expect("a secret")
        .to_owned();
    json(&bob.run(&["2fa", "confirm", &totp(&secret, 0), "--json"]));

    // Password guessing from eight addresses.
    for last in 2..=9 {
        let statuses = guess_until_throttled(&hub, loopback(last), "bob", 10);
        assert_eq!(statuses.last(), Some(&429), "from 127.0.0.{last}: {statuses:?}");
    }
    // Bob, from a fresh address, with password and code: in. (The confirmation used this step's
    // code; the next step's is accepted too, allowing for clock drift.)
    let code = totp(&secret, 1);
    let (status, body) = login_from(&hub, loopback(10), "bob", password, Some(&code));
    assert_eq!(status, 200, "a 2FA user was locked by password failures: {body}");

    // Someone with the password replays that code, then guesses, from three more addresses.
    let (status, body) = login_from(&hub, loopback(11), "bob", password, Some(&code));
    assert_eq!(status, 401, "{body}");
    assert!(error_of(&body).contains("already used"), "{body}");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for last in [12, 13] {
        let (status, body) = login_from(&hub, loopback(last), "bob", password, Some(wrong));
        assert_eq!(status, 401, "{body}");
    }
    // Three code failures for the account (login_code_failures_per_account): the next code
    // attempt is throttled, from any address.
    let (status, body) = login_from(&hub, loopback(14), "bob", password, Some(wrong));
    assert_eq!(status, 429, "wrong and replayed codes are not throttled: {body}");
    assert!(error_of(&body).contains("second factor"), "{body}");
    let refused = events(&admin, &["--action", "login", "--outcome", "refused"]);
    assert!(
        refused
            .iter()
            .any(|e| e["details"]["reason"] == "too many failed logins for this account's second factor"),
        "{refused:#?}"
    );
}
