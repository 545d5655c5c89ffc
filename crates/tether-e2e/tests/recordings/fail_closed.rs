//! Recording fails closed: a terminal that cannot be recorded is refused.

use tether_e2e::HubOptions;

use crate::common::*;

/// Recording fails closed: when the hub cannot write a terminal's recording, the terminal is
/// refused with a message saying so, and the refusal is visible; a hub with `record_sessions`
/// off relays terminals without recording them.
#[test]
fn a_terminal_that_cannot_be_recorded_is_refused() {
    let (hub, cli, agent) = setup(HubOptions::default());
    // Recordings go to the database: one that refuses a session's row refuses its recording.
    tether_e2e::sqlite(
        &hub.data_dir().join("hub.db"),
        "CREATE TRIGGER refuse_recordings BEFORE INSERT ON terminal_sessions \
         BEGIN SELECT RAISE(ABORT, 'recordings refused by the test'); END;",
    );
    let output = cli.exec(&agent.name, &["echo", "should-not-run-unrecorded"]);
    assert!(!output.success(), "an unrecordable exec must fail: {output}");
    assert!(
        output.stderr.contains("cannot be recorded"),
        "the refusal should say why: {output}"
    );
    assert!(
        !output.stdout.contains("should-not-run-unrecorded"),
        "no output may reach the user: {output}"
    );

    let (_hub, cli, agent) = setup(HubOptions::default().config("record_sessions = false\n"));
    let output = cli.exec(&agent.name, &["echo", "unrecorded-by-choice"]);
    assert!(output.ok().contains("unrecorded-by-choice"), "{output}");
    assert!(
        sessions(&cli).is_empty(),
        "record_sessions = false records nothing"
    );
}
