//! The storage checks of live sessions (`store/active_sessions.rs`: file transfers and port
//! forwards while they run, and the open terminals as the Active sessions list reads them), run
//! on both backends by `store/tests.rs`.

use crate::store::{
    Store,
    active_sessions::{ActiveSessionRecord, ActivityDetail, ForwardTarget},
    terminals::OpenTerminal,
};

fn record(
    id: &str,
    user: &str,
    replica: &str,
    started_at: i64,
    detail: ActivityDetail,
) -> ActiveSessionRecord {
    ActiveSessionRecord {
        id: id.into(),
        sid: format!("sid-{id}"),
        detail,
        replica_id: replica.into(),
        user_id: user.into(),
        user_name: format!("name-{user}"),
        device_id: "live-d1".into(),
        device_name: "live-pump".into(),
        started_at,
    }
}

fn forward(target: &str) -> ForwardTarget {
    ForwardTarget {
        target: target.into(),
        protocol: "tcp".into(),
    }
}

/// Rows inserted, read back oldest first (of one user or everyone's), a forward's new target
/// stored, a row deleted when its session ends, and a stopped replica's rows deleted at once and
/// taken into account by the dead-replica sweep.
pub(super) async fn active_sessions(store: &Store) {
    let upload = ActivityDetail::FileTransfer {
        upload: true,
        path: "/tmp/ünïcode file".into(),
    };
    let tunnel = ActivityDetail::PortForward {
        targets: vec![forward("127.0.0.1:22")],
    };
    store
        .insert_active_session(&record("a2", "u-bob", "live-r1", 20, tunnel.clone()))
        .await
        .unwrap();
    store
        .insert_active_session(&record("a1", "u-ann", "live-r1", 10, upload.clone()))
        .await
        .unwrap();
    store
        .insert_active_session(&record("a3", "u-ann", "live-r2", 30, tunnel.clone()))
        .await
        .unwrap();
    let all = store.active_sessions(None, 1000).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|row| row.id.as_str()).collect();
    assert_eq!(ids, ["a1", "a2", "a3"], "oldest first");
    assert_eq!(all[0], record("a1", "u-ann", "live-r1", 10, upload.clone()));
    assert_eq!(all[0].detail.kind(), "file_transfer");
    let ann = store.active_sessions(Some("u-ann"), 1000).await.unwrap();
    assert_eq!(ann.len(), 2);
    assert!(ann.iter().all(|row| row.user_id == "u-ann"));
    assert_eq!(
        store.active_sessions(None, 2).await.unwrap().len(),
        2,
        "the limit"
    );

    let wider = ActivityDetail::PortForward {
        targets: vec![forward("127.0.0.1:22"), forward("10.0.0.5:5432")],
    };
    store.update_active_session("a2", &wider).await.unwrap();
    let bob = store.active_sessions(Some("u-bob"), 10).await.unwrap();
    assert_eq!(bob[0].detail, wider);

    store.delete_active_session("a2").await.unwrap();
    assert!(store.active_sessions(Some("u-bob"), 10).await.unwrap().is_empty());

    // A replica taken for dead: its rows count as served (it gets a heartbeat to show it is
    // alive), then, once deleted, it is forgotten.
    store.replica_heartbeat("live-r2", 100).await.unwrap();
    let dead = store.dead_replicas("live-r1", 1_000, 500).await.unwrap();
    assert!(dead.contains(&"live-r2".to_owned()), "{dead:?}");
    assert!(!dead.contains(&"live-r1".to_owned()), "never itself");
    assert_eq!(store.delete_active_sessions_of("live-r2").await.unwrap(), 1);
    assert_eq!(store.delete_active_sessions_of("live-r2").await.unwrap(), 0);
    store.forget_dead_replicas(500).await.unwrap();
    let dead = store.dead_replicas("live-r1", 1_000, 500).await.unwrap();
    assert!(!dead.contains(&"live-r2".to_owned()), "{dead:?}");
    assert_eq!(store.delete_active_sessions_of("live-r1").await.unwrap(), 1);
    assert!(store.active_sessions(None, 1000).await.unwrap().is_empty());
}

/// Open terminals of every replica as the list reads them, with the recording a watcher
/// follows: the newest unfinished part after re-attaches, none when not recorded.
pub(super) async fn live_terminals(store: &Store) {
    let terminal = |id: &str, sid: &str, actor: &str, opened_at: i64| OpenTerminal {
        id: id.into(),
        sid: sid.into(),
        replica_id: "live-r3".into(),
        actor_id: Some(actor.into()),
        actor_name: Some(format!("name-{actor}")),
        client_address: None,
        user_agent: None,
        device_id: "live-d1".into(),
        device_name: "live-pump".into(),
        command: None,
        opened_at,
    };
    store
        .insert_open_terminal(&terminal("lt1", "live-s1", "u-ann", 10))
        .await
        .unwrap();
    store
        .insert_open_terminal(&terminal("lt2", "live-s2", "u-bob", 20))
        .await
        .unwrap();
    let info = super::session_info;
    store
        .insert_terminal_session(&info("live-s1"), 1_000)
        .await
        .unwrap();
    store.end_terminal_session("live-s1", 1_500, 10).await.unwrap();
    store
        .insert_terminal_session(&info("live-s1-resumed-2"), 2_000)
        .await
        .unwrap();

    let ann = store.live_terminals(Some("u-ann"), 10).await.unwrap();
    assert_eq!(ann.len(), 1);
    assert_eq!(ann[0].sid, "live-s1");
    assert_eq!(ann[0].user_name, "name-u-ann");
    assert_eq!(ann[0].recording_sid.as_deref(), Some("live-s1-resumed-2"));
    let all = store.live_terminals(None, 1000).await.unwrap();
    let bob = all
        .iter()
        .find(|row| row.sid == "live-s2")
        .expect("bob's terminal");
    assert_eq!(bob.recording_sid, None, "not recorded");
    store.delete_open_terminal("live-s1", "live-r3").await.unwrap();
    store.delete_open_terminal("live-s2", "live-r3").await.unwrap();
    assert!(store.live_terminals(Some("u-ann"), 10).await.unwrap().is_empty());
}
