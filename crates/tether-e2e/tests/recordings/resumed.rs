//! A terminal resumed after its operator's connection dropped is one recording: the hub lists
//! the session once (no `SID-resumed-…` fragment), and its recording holds the output from
//! before the drop and after each re-attach, in order and once (a re-attach replays output the
//! recording holds already), the time away an idle gap in it.

use tether_e2e::{HubOptions, PtySession, WAIT, wait_for};

use crate::common::*;

#[test]
fn a_resumed_terminal_continues_its_recording() {
    let (hub, cli, agent) = setup(HubOptions::default());
    let token = cli.token();

    let terminal = PtySession::terminal(&cli, &agent.name);
    let banner = terminal.expect("Escape", LONG);
    let sid = banner
        .split("session ")
        .nth(1)
        .and_then(|rest| rest.split('.').next())
        .expect("the banner names the session")
        .trim()
        .to_owned();
    let (before, before_out) = marker("before-drop");
    terminal.send_line(&before);
    terminal.expect(&before_out, LONG);
    // The operator's connection dies without a word (SIGKILL): the shell is kept, detached.
    drop(terminal);
    wait_for("the session to be detached", WAIT, || {
        let listing = cli.run(&["sessions", "detached", "--json"]);
        listing.ok().contains(&sid).then_some(())
    });

    // Re-attached twice: each part goes on in the same recording.
    for part in ["first", "second"] {
        let again = PtySession::spawn(&cli, &["terminal", &agent.name, "--attach", &sid], 24, 80);
        again.expect("Connected to", LONG);
        let (command, output) = marker(&format!("after-{part}-resume"));
        again.send_line(&command);
        again.expect(&output, LONG);
        if part == "second" {
            let mut again = again;
            again.send_line("exit");
            again.expect_exit(LONG);
        } else {
            drop(again);
            wait_for("the session to be detached again", WAIT, || {
                let listing = cli.run(&["sessions", "detached", "--json"]);
                listing.ok().contains(&sid).then_some(())
            });
        }
    }

    let session = wait_session(&cli, "resumed, then ended", |s| {
        s["sid"].as_str() == Some(sid.as_str()) && s["ended_at"].is_i64()
    });
    let listed = sessions(&cli);
    let fragments: Vec<&str> = listed
        .iter()
        .filter_map(|s| s["sid"].as_str())
        .filter(|listed| listed.starts_with(&sid))
        .collect();
    assert_eq!(
        fragments,
        [sid.as_str()],
        "one recording for the session: {listed:?}"
    );

    let recorded = recording(&hub, &token, &sid, 0);
    let output = recorded.output();
    let at = |needle: &str| {
        find(&output, needle.as_bytes()).unwrap_or_else(|| {
            panic!(
                "{needle} missing from the recording:\n{}",
                String::from_utf8_lossy(&output)
            )
        })
    };
    let positions = [
        at(&before_out),
        at("after-first-resume-"),
        at("after-second-resume-"),
    ];
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "the parts are recorded in order: {positions:?}"
    );
    // `--attach` asks for the shell's output from its start: what was recorded is not again.
    let count = String::from_utf8_lossy(&output)
        .matches(before_out.as_str())
        .count();
    assert_eq!(
        count,
        1,
        "{before_out} recorded once:\n{}",
        String::from_utf8_lossy(&output)
    );
    assert!(
        recorded.records.windows(2).all(|pair| pair[0].t <= pair[1].t),
        "record times go forward across the re-attaches"
    );
    // The byte count covers every part.
    assert_eq!(
        session["bytes_out"].as_u64(),
        Some(output.len() as u64),
        "{session}"
    );
}
