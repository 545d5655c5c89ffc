//! `tether audit export --follow` as a SIEM feed: a follower prints events as JSON lines while
//! they are written; killed (SIGKILL) and resumed with `--after` the last `seq` it printed, the
//! two runs together hold every event of the log exactly once, with no gap.

use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;
use tether_e2e::{Cli, Hub, Proc, WAIT, wait_for};

/// The `seq` of each complete line the follower printed (a line cut by the kill is not one).
fn printed(follower: &Proc) -> Vec<i64> {
    let text = follower.stdout();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    complete
        .lines()
        .map(|line| {
            let event: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON event: {e}: {line}"));
            event["seq"].as_i64().unwrap_or_else(|| panic!("no seq: {line}"))
        })
        .collect()
}

fn follow(cli: &Cli, hub: &Hub, name: &str, after: Option<i64>) -> Proc {
    let mut args = vec![
        "audit".to_owned(),
        "export".to_owned(),
        "--follow".to_owned(),
        "--poll-interval".to_owned(),
        "1".to_owned(),
    ];
    if let Some(after) = after {
        args.extend(["--after".to_owned(), after.to_string()]);
    }
    Proc::spawn(name, cli.command(&args), hub.dir())
}

/// The newest event's `seq`.
fn head(cli: &Cli) -> i64 {
    let output = cli.run(&["audit", "list", "--json", "--limit", "1"]);
    let events: Value = serde_json::from_str(output.ok()).unwrap();
    events[0]["seq"].as_i64().expect("an event")
}

#[test]
fn a_follower_killed_and_resumed_after_its_last_seq_misses_and_repeats_nothing() {
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    hub.add_user("bob", false, "pw-bob-correct-horse");
    let stop = AtomicBool::new(false);
    let (first, second, last) = std::thread::scope(|scope| {
        // Audit writes all along: each login is an event.
        let producer = scope.spawn(|| {
            let bob = hub.cli();
            while !stop.load(Ordering::SeqCst) {
                bob.login("bob", "pw-bob-correct-horse");
            }
        });
        let mut first = follow(&cli, &hub, "follow-1", None);
        let start = head(&cli);
        wait_for(
            "the follower to print events written after it started",
            WAIT,
            || {
                printed(&first)
                    .last()
                    .is_some_and(|seq| *seq > start + 3)
                    .then_some(())
            },
        );
        first.kill();
        let first = printed(&first);
        let cursor = *first.last().unwrap();
        // Events written while no follower runs.
        wait_for("events after the kill", WAIT, || {
            (head(&cli) > cursor + 3).then_some(())
        });
        let mut second = follow(&cli, &hub, "follow-2", Some(cursor));
        let resumed = head(&cli);
        wait_for("the resumed follower to catch up and follow", WAIT, || {
            printed(&second)
                .last()
                .is_some_and(|seq| *seq > resumed + 3)
                .then_some(())
        });
        stop.store(true, Ordering::SeqCst);
        producer.join().expect("the login loop");
        let last = head(&cli);
        wait_for("the resumed follower to reach the head", WAIT, || {
            printed(&second)
                .last()
                .is_some_and(|seq| *seq >= last)
                .then_some(())
        });
        second.kill();
        (first, printed(&second), last)
    });
    let mut union = first.clone();
    union.extend(&second);
    // Up to what the follower printed last (at least the head once the logins stopped).
    let expected: Vec<i64> = (1..=*second.last().unwrap()).collect();
    assert!(expected.len() as i64 >= last);
    assert_eq!(
        union,
        expected,
        "every event once, in order (first run up to {:?}, second from {:?})",
        first.last(),
        second.first()
    );
}
