//! `tether exec`: one command on a device, its merged output on stdout, its exit status as the
//! CLI's — for large outputs, signals, closed stdin, several at once, and offline devices.

use std::fmt::Write as _;

use tether_e2e::{Agent, Hub};

#[test]
fn exit_statuses_and_signals_come_back() {
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let agent = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\n");
    cli.accept(&agent.name);

    for code in [0, 1, 2, 42, 255] {
        let output = cli.exec(&agent.name, &[&format!("exit {code}")]);
        assert_eq!(output.code, Some(code), "{output}");
    }
    // Killed by a signal: 128 + the signal number, as a shell reports it.
    let killed = cli.exec(&agent.name, &["kill -9 $$"]);
    assert_eq!(killed.code, Some(128 + 9), "{killed}");
    let terminated = cli.exec(&agent.name, &["echo before; kill -TERM $$; echo after"]);
    assert_eq!(terminated.code, Some(128 + 15), "{terminated}");
    assert_eq!(terminated.stdout, "before\n", "{terminated}");

    // Words are passed as words: quoting survives the trip.
    let words = cli.exec(&agent.name, &["printf", "[%s]", "two words", "it's", "$HOME"]);
    assert_eq!(words.ok(), "[two words][it's][$HOME]", "{words}");

    // stdin is closed: a command reading it ends at once.
    let cat = cli.exec(&agent.name, &["cat"]);
    assert_eq!(cat.ok(), "", "{cat}");
}

#[test]
fn large_output_arrives_complete_and_in_order() {
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let agent = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\n");
    cli.accept(&agent.name);

    // About 600 KB: many frames of any size the session allows.
    let output = cli.exec(&agent.name, &["seq", "1", "100000"]);
    let mut expected = String::new();
    for n in 1..=100_000 {
        writeln!(expected, "{n}").unwrap();
    }
    assert!(output.success(), "{}", output.stderr);
    assert_eq!(output.stdout.len(), expected.len(), "output size differs");
    assert!(output.stdout == expected, "output differs from `seq 1 100000`");

    // Interleaved stdout and stderr both arrive.
    let mixed = cli.exec(
        &agent.name,
        &["for i in 1 2 3; do echo out$i; echo err$i >&2; done"],
    );
    for i in 1..=3 {
        assert!(mixed.stdout.contains(&format!("out{i}\n")), "{mixed}");
        assert!(mixed.stdout.contains(&format!("err{i}\n")), "{mixed}");
    }
}

#[test]
fn concurrent_execs_do_not_mix() {
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let agent = Agent::start(
        &hub,
        "[terminal]\nshell = \"/bin/sh\"\nmax_sessions = 16\nmax_sessions_per_user = 16\n",
    );
    cli.accept(&agent.name);

    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..4)
            .map(|i| {
                let cli = &cli;
                let name = &agent.name;
                scope.spawn(move || {
                    let script = format!("for n in 1 2 3 4 5; do echo run{i}-$n; done; exit {i}");
                    (i, cli.exec(name, &[&script]))
                })
            })
            .collect();
        for run in runs {
            let (i, output) = run.join().unwrap();
            let expected: String = (1..=5).map(|n| format!("run{i}-{n}\n")).collect();
            assert_eq!(output.code, Some(i), "{output}");
            assert_eq!(output.stdout, expected, "{output}");
        }
    });
}

#[test]
fn exec_on_an_offline_device_fails_clearly() {
    let hub = Hub::start_default();
    let cli = hub.user_cli("alice", true);
    let mut agent = Agent::start(&hub, "[terminal]\nshell = \"/bin/sh\"\n");
    cli.accept(&agent.name);
    agent.kill();
    cli.wait_device(&agent.name, "offline", |d| !d.online);

    let output = cli.exec(&agent.name, &["echo", "nope"]);
    assert_eq!(output.code, Some(1), "{output}");
    assert!(output.stdout.is_empty(), "{output}");
    assert!(
        output.stderr.to_lowercase().contains("offline"),
        "the error should say the device is offline:\n{output}"
    );
}
