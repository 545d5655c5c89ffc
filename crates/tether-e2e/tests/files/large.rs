//! 200 MB transfers: resuming after dropped connections, and a terminal that stays responsive
//! meanwhile.

use std::time::Duration;

use tether_e2e::{
    FaultProxy, PtySession, WAIT,
    peers::{sha256_file, write_deterministic_file},
    wait_for,
};

use crate::common::*;

/// Big transfers: 200 MB (the acceptance size), run once each.
const BIG: u64 = 200 * 1024 * 1024;

/// Waits until `proxy` forwarded `more` bytes beyond `from` (or `done()`); returns whether it did.
fn wait_for_bytes(proxy: &FaultProxy, from: u64, more: u64, done: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + BIG_LIMIT;
    while std::time::Instant::now() < deadline {
        if proxy.bytes() >= from + more {
            return true;
        }
        if done() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn a_200_mb_transfer_resumes_after_the_connection_drops() {
    let (s, proxy) = Setup::start_via_proxy("", FaultProxy::for_hub);
    let big = s.local("big");
    write_deterministic_file(&big, 200, BIG);
    let expected = sha256_file(&big);
    let on_device = s.root.join("big");

    // Upload; every connection of the agent is cut once 40 MB went through.
    let (output, cut) = std::thread::scope(|scope| {
        let copy = scope.spawn(|| {
            s.cp_for(
                &["--json", big.to_str().unwrap(), &s.remote(&on_device)],
                BIG_LIMIT,
            )
        });
        let cut = wait_for_bytes(&proxy, proxy.bytes(), 40 << 20, || copy.is_finished());
        if cut {
            proxy.cut_all();
        }
        (copy.join().expect("cp thread"), cut)
    });
    assert!(
        cut,
        "the upload ended before 40 MB went through the proxy:\n{output}"
    );
    let report = parse_json(&output);
    assert_eq!(report["sha256"], expected.as_str(), "{report}");
    assert!(
        report["resumed"].as_u64().is_some_and(|n| n >= 1),
        "the CLI should report the resumption: {report}"
    );
    assert!(
        on_device.is_file(),
        "the CLI reported success ({report}) but the device has no {}; the root holds {}",
        on_device.display(),
        describe(&s.root)
    );
    assert_eq!(sha256_file(&on_device), expected, "the uploaded file differs");
    assert_eq!(names_in(&s.root), ["big"], "no temporary upload files left");
    let accepted_before = proxy.accepted();

    // Download through a proxy that drops each connection after 20 MB (both directions; the
    // issue's figure), starting from a fresh connection so that the first drop falls in the
    // middle of the file.
    proxy.cut_all();
    wait_for("the agent to reconnect through the proxy", WAIT, || {
        (proxy.accepted() > accepted_before).then_some(())
    });
    let accepted_before = proxy.accepted();
    wait_for("the device to answer `ls` again", WAIT, || {
        s.cli.run(&["ls", &s.remote(&s.root)]).success().then_some(())
    });
    proxy.drop_every(20 << 20);
    let back = s.local("back");
    let output = s.cp_for(
        &["--json", &s.remote(&on_device), back.to_str().unwrap()],
        BIG_LIMIT,
    );
    proxy.drop_every(0);
    let report = parse_json(&output);
    assert!(
        proxy.accepted() > accepted_before,
        "the agent should have reconnected during the download"
    );
    assert!(
        report["resumed"].as_u64().is_some_and(|n| n >= 1),
        "the CLI should report the resumption: {report}"
    );
    assert_eq!(report["sha256"], expected.as_str(), "{report}");
    assert_eq!(sha256_file(&back), expected, "the downloaded file differs");
    assert_eq!(mtime_of(&back), mtime_of(&on_device));
    assert_eq!(
        names_in(s.local.path()),
        ["back", "big"],
        "no partial download left"
    );
}

#[test]
fn a_terminal_echoes_keystrokes_while_a_200_mb_download_runs() {
    let s = Setup::start("");
    let device_file = s.root.join("big");
    write_deterministic_file(&device_file, 201, BIG);
    set_mode(&device_file, 0o604);
    let expected = sha256_file(&device_file);
    let terminal = PtySession::terminal(&s.cli, &s.agent.name);
    terminal.send_line("echo ready-$((40+2))");
    terminal.expect("ready-42", WAIT);

    let back = s.local("big");
    let (output, echoed_during) = std::thread::scope(|scope| {
        let copy = scope.spawn(|| s.cp_for(&[&s.remote(&device_file), back.to_str().unwrap()], BIG_LIMIT));
        let mut echoed_during = 0;
        let mut n = 0u64;
        while !copy.is_finished() {
            n += 1;
            // The shell computes the marker: only a round trip through the device shows it.
            terminal.send_line(&format!("echo typed-$(({n}*1000+7))"));
            terminal.expect(&format!("typed-{}", n * 1000 + 7), WAIT);
            if !copy.is_finished() {
                echoed_during += 1;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        (copy.join().expect("cp thread"), echoed_during)
    });
    output.ok();
    eprintln!("{echoed_during} keystroke round trip(s) while the 200 MB download ran");
    assert!(
        echoed_during >= 1,
        "the download ended before one keystroke round trip: nothing was shown"
    );
    assert_eq!(sha256_file(&back), expected, "the downloaded file differs");
    assert_eq!(mode_of(&back), 0o604);
    assert_eq!(mtime_of(&back), mtime_of(&device_file));
}
