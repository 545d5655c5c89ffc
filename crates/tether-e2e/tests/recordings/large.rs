//! A 50 MB recording is whole, and seeking into it does not stream it from the start.

use std::time::Duration;

use tether_e2e::HubOptions;

use crate::common::*;

#[test]
fn large_recording_is_whole_and_seeks_without_streaming_from_the_start() {
    const TOTAL: usize = 50_000_000;
    let (hub, cli, agent) = setup(HubOptions::default());
    let token = cli.token();
    // 100-byte lines of x; exactly 50 MB.
    let command = "yes xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx | head -c 50000000";
    let exec = cli.run_for(&["exec", &agent.name, "--", command], Duration::from_secs(300));
    assert_eq!(exec.ok().len(), TOTAL, "exec printed {} bytes", exec.stdout.len());
    drop(exec);

    let session = wait_session(&cli, "for the 50 MB exec, ended", |s| {
        s["command"].as_str() == Some(command) && s["ended_at"].is_i64()
    });
    let sid = session["sid"].as_str().unwrap().to_owned();
    assert_eq!(session["bytes_out"].as_u64(), Some(TOTAL as u64), "{session}");

    let whole = recording(&hub, &token, &sid, 0);
    let outputs: Vec<&Rec> = whole.records.iter().filter(|r| r.k == "o").collect();
    let total: usize = outputs.iter().map(|r| r.d.len()).sum();
    assert_eq!(total, TOTAL, "the recording holds all the output");
    assert!(
        outputs
            .iter()
            .all(|r| r.d.iter().all(|&b| b == b'x' || b == b'\n'))
    );

    // The middle, by bytes: the moment half the output had been sent.
    let mut sum = 0;
    let middle = outputs
        .iter()
        .find(|r| {
            sum += r.d.len();
            sum >= TOTAL / 2
        })
        .unwrap()
        .t;
    let last = outputs.last().unwrap().t;
    let seeked = recording(&hub, &token, &sid, middle);
    let first = seeked.records.first().expect("records after the middle");
    assert_eq!(first.k, "screen", "{:?}", first.k);
    assert_eq!(first.t, middle);
    assert!(
        find(&first.d, b"xxxxxxxxxx").is_some(),
        "the screen at the middle shows the output"
    );
    let streamed: Vec<&Rec> = seeked.records.iter().filter(|r| r.k == "o").collect();
    let streamed_bytes: usize = streamed.iter().map(|r| r.d.len()).sum();
    assert!(
        streamed.first().is_some_and(|r| r.t >= middle),
        "the first output record after seeking to {middle} ms is at {:?} ms",
        streamed.first().map(|r| r.t)
    );
    assert!(seeked.records.iter().all(|r| r.t >= middle));
    assert_eq!(streamed.last().map(|r| r.t), Some(last));
    eprintln!(
        "seek to {middle} ms of {last} ms: {streamed_bytes} of {TOTAL} output bytes, {} of {} body bytes",
        seeked.body_len, whole.body_len
    );
    assert!(
        streamed_bytes <= TOTAL * 6 / 10 && seeked.body_len <= whole.body_len * 6 / 10,
        "seeking to the middle streamed {streamed_bytes} of {TOTAL} output bytes ({} of {} body bytes): \
         it must not stream from the start",
        seeked.body_len,
        whole.body_len
    );
}
