//! The storage tests, run on both backends: the embedded SQLite file and a real PostgreSQL
//! cluster started by the test (tether-e2e's guard). One list of checks, two stores.
//!
//! Convention for `store/`, unit tests: a `tests.rs` sibling declared `#[cfg(test)] mod tests;`.
//! This one file holds the tests of every table family's file, so that each check runs on both
//! backends (recordings' in `tests/recordings.rs`, the audit writer's in `tests/audit_writer.rs`).

mod active_sessions;
mod audit_writer;
mod inventory;
mod recordings;

use crate::{
    domain::audit::AuditEvent, domain::audit::GENESIS_HASH, domain::audit::verify,
    domain::device::DeviceRecord, domain::device::DeviceStatus, domain::recording_format::SessionInfo,
    store::AuditFilter, store::Backend, store::Store,
};
use tether_proto::audit_checkpoint::{Statement, StatementKind};
use tether_proto::clock::unix_millis;

/// Every check, in order, on one fresh store.
async fn check_all(store: &Store) {
    users_and_sessions(store).await;
    devices(store).await;
    audit_chain(store).await;
    audit_writer::concurrent_records(store).await;
    recordings::terminal_sessions(store).await;
    recordings::recording_chunks(store).await;
    open_terminals(store).await;
    active_sessions::active_sessions(store).await;
    active_sessions::live_terminals(store).await;
    access_tokens(store).await;
    access_control(store).await;
    install_tokens(store).await;
    inventory::device_inventory(store).await;
}

/// Roles, grants, tags, approval policies and requests, and the second factor.
async fn access_control(store: &Store) {
    use crate::{
        domain::permissions::Action, domain::roles::RoleGrant, domain::roles::Scope,
        store::access::AccessRequest,
    };
    store.upsert_user("carol", "hash", false).await.unwrap();
    let carol = store.user_by_name("carol").await.unwrap().unwrap();
    store
        .create_role("reader", &[Action::ViewDevices, Action::FileRead], "reads")
        .await
        .unwrap();
    let grants = [RoleGrant {
        role: "reader".into(),
        scope: "tag:lab".into(),
    }];
    store.set_role_grants(&carol.id, &grants).await.unwrap();
    assert_eq!(store.role_grants(&carol.id).await.unwrap(), grants);
    let held = store.grants(&carol).await.unwrap();
    assert_eq!(held.standing.len(), 1);
    assert_eq!(held.standing[0].scope, Scope::Tag("lab".into()));

    let devices = store.devices(None).await.unwrap();
    let device = &devices[0].id;
    store
        .set_device_tags(device, &["lab".into(), "b".into(), "lab".into()])
        .await
        .unwrap();
    assert_eq!(store.device(device).await.unwrap().unwrap().tags, ["b", "lab"]);

    assert!(store.set_approval_policy("tag:lab", true).await.unwrap());
    assert!(!store.set_approval_policy("tag:lab", true).await.unwrap(), "once");
    let request = AccessRequest {
        id: "r1".into(),
        user_id: carol.id.clone(),
        user_name: "carol".into(),
        scope: "tag:lab".into(),
        permissions: vec!["terminal".into()],
        duration_secs: 60,
        reason: "fix".into(),
        status: "pending".into(),
        created_at: unix_millis() / 1000,
        decided_by: None,
        decided_at: None,
        note: None,
        expires_at: None,
    };
    store.insert_access_request(&request).await.unwrap();
    let soon = unix_millis() + 60_000;
    assert!(
        store
            .decide_access_request("r1", "pending", "approved", "alice", None, Some(soon))
            .await
            .unwrap()
    );
    assert!(
        !store
            .decide_access_request("r1", "pending", "denied", "bob", None, None)
            .await
            .unwrap(),
        "decided once"
    );
    let held = store.grants(&carol).await.unwrap();
    assert_eq!((held.approved.len(), held.approval_required.len()), (1, 1));
    assert_eq!(store.access_requests(Some(&carol.id), 10).await.unwrap().len(), 1);
    assert!(
        store.expire_access_requests().await.unwrap().is_empty(),
        "not yet"
    );

    store.set_two_factor_secret(&carol.id, "SECRET").await.unwrap();
    store
        .enable_two_factor(&carol.id, 10, &["hash-a".into()])
        .await
        .unwrap();
    assert!(
        !store.accept_two_factor_step(&carol.id, 10).await.unwrap(),
        "a step is used once"
    );
    assert!(store.accept_two_factor_step(&carol.id, 11).await.unwrap());
    assert!(store.use_recovery_code(&carol.id, "hash-a").await.unwrap());
    assert!(
        !store.use_recovery_code(&carol.id, "hash-a").await.unwrap(),
        "a recovery code is used once"
    );
    store.set_setting("require_two_factor", "true").await.unwrap();
    store.set_setting("require_two_factor", "false").await.unwrap();
    assert_eq!(
        store.setting("require_two_factor").await.unwrap().as_deref(),
        Some("false")
    );
}

async fn users_and_sessions(store: &Store) {
    assert_eq!(store.count_users().await.unwrap(), 0);
    assert!(store.upsert_user("alice", "hash-1", true).await.unwrap());
    assert!(
        !store.upsert_user("alice", "hash-2", false).await.unwrap(),
        "an update"
    );
    let alice = store.user_by_name("alice").await.unwrap().unwrap();
    assert_eq!(
        (alice.password_hash.as_str(), alice.admin, alice.disabled),
        ("hash-2", false, false)
    );
    assert!(store.user_by_name("bob").await.unwrap().is_none());

    let later = unix_millis() + 60_000;
    store
        .create_session("token-1", &alice.id, later, "127.0.0.1:1", Some("test"))
        .await
        .unwrap();
    store
        .create_session("token-2", &alice.id, later, "127.0.0.1:2", None)
        .await
        .unwrap();
    store
        .create_session("expired", &alice.id, unix_millis() - 1, "127.0.0.1:3", None)
        .await
        .unwrap();
    assert_eq!(store.session_user("token-1").await.unwrap().unwrap().id, alice.id);
    assert!(store.session_user("expired").await.unwrap().is_none());
    assert_eq!(store.delete_expired_sessions().await.unwrap(), 1);

    store.set_user_disabled(&alice.id, true).await.unwrap();
    assert!(
        store.session_user("token-1").await.unwrap().is_none(),
        "disabled users have no sessions"
    );
    store.set_user_disabled(&alice.id, false).await.unwrap();
    assert_eq!(
        store
            .delete_user_sessions(&alice.id, Some("token-1"))
            .await
            .unwrap(),
        1
    );
    assert!(store.session_user("token-1").await.unwrap().is_some());
    store.delete_session("token-1").await.unwrap();
    assert!(store.session_user("token-1").await.unwrap().is_none());
    let listed = store.users().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "alice");
}

async fn devices(store: &Store) {
    let device = |id: &str, key: &str, name: &str| DeviceRecord {
        id: id.into(),
        public_key: key.into(),
        identity: r#"{"mac":"00:11"}"#.into(),
        name: name.into(),
        status: DeviceStatus::Pending,
        agent_version: Some("1.0".into()),
        created_at: unix_millis(),
        last_seen_at: None,
        tags: Vec::new(),
        inventory: None,
    };
    store.insert_device(&device("d1", "key-1", "beta")).await.unwrap();
    store
        .insert_device(&device("d2", "key-2", "alpha"))
        .await
        .unwrap();
    assert!(
        store.insert_device(&device("d3", "key-1", "dup")).await.is_err(),
        "keys are unique"
    );
    assert_eq!(
        store.device_by_public_key("key-2").await.unwrap().unwrap().id,
        "d2"
    );
    assert!(
        store
            .set_device_status("d1", DeviceStatus::Accepted)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_device_status("nope", DeviceStatus::Accepted)
            .await
            .unwrap()
    );
    let names: Vec<String> = store
        .devices(None)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    let accepted = store.devices(Some(DeviceStatus::Accepted)).await.unwrap();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].id, "d1");
    store
        .update_device_identity("d1", r#"{"mac":"22"}"#, "gamma", None)
        .await
        .unwrap();
    store.touch_device("d1").await.unwrap();
    let d1 = store.device("d1").await.unwrap().unwrap();
    assert_eq!((d1.name.as_str(), d1.agent_version.as_deref()), ("gamma", None));
    assert!(d1.last_seen_at.is_some());
    assert!(store.delete_device("d2").await.unwrap());
    assert!(store.device("d2").await.unwrap().is_none());
}

fn event(seq: i64, prev_hash: String, action: &str, time: i64) -> AuditEvent {
    let mut event = AuditEvent {
        seq,
        id: uuid::Uuid::now_v7().to_string(),
        time,
        actor_kind: "user".into(),
        actor_id: Some("u1".into()),
        actor_name: Some("alice".into()),
        client_address: None,
        user_agent: None,
        action: action.into(),
        object_kind: Some("device".into()),
        object_id: Some("d1".into()),
        object_name: None,
        outcome: "success".into(),
        details: serde_json::json!({"n": seq}),
        session_id: None,
        prev_hash,
        hash: String::new(),
    };
    event.hash = event.compute_hash();
    event
}

async fn audit_chain(store: &Store) {
    for (index, action) in ["login", "terminal.open", "terminal.close"].iter().enumerate() {
        let time = 1_000 * (index as i64 + 1);
        store
            .append_audit_event(|seq, prev| event(seq, prev, action, time))
            .await
            .unwrap();
    }
    let all = store.audit_events_after(0, 100).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].prev_hash, GENESIS_HASH);
    assert!(verify(store.audit_anchor().await.unwrap(), all).ok);

    let filter = AuditFilter {
        action: Some("terminal.open".into()),
        ..Default::default()
    };
    let found = store.audit_events(&filter, 10).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].details, serde_json::json!({"n": 2}));
    let newest_first = store.audit_events(&AuditFilter::default(), 10).await.unwrap();
    assert_eq!(newest_first.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 2, 1]);
    let window = AuditFilter {
        from: Some(2_000),
        to: Some(3_000),
        ..Default::default()
    };
    assert_eq!(store.audit_events(&window, 10).await.unwrap().len(), 1);

    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let attest = |seq, hash: &str| Statement::sign(StatementKind::Anchor, seq, hash, 5, &key);
    assert_eq!(store.prune_audit(2_500, attest).await.unwrap(), 2);
    let anchor = store.audit_anchor().await.unwrap();
    assert_eq!(anchor.0, 2);
    let signed = store.audit_anchor_statement().await.unwrap();
    assert_eq!((signed.seq, &signed.hash), (anchor.0, &anchor.1));
    let statement = signed.statement.expect("the anchor carries its signed statement");
    assert_eq!((statement.seq, statement.kind), (2, StatementKind::Anchor));
    assert_eq!(statement.check_signature(), Ok(()));
    let rest = store.audit_events_after(0, 100).await.unwrap();
    assert!(
        verify(anchor, rest).ok,
        "the chain verifies from its anchor after pruning"
    );
}

/// The terminal session `sid` of user alice on device gamma, 80 x 24.
pub(super) fn session_info(sid: &str) -> SessionInfo {
    SessionInfo {
        sid: sid.into(),
        device_id: "d1".into(),
        device_name: "gamma".into(),
        user_id: "u1".into(),
        user_name: "alice".into(),
        command: None,
        width: 80,
        height: 24,
    }
}

/// Open terminals per replica, and the unfinished recordings of a session (with its re-attaches).
async fn open_terminals(store: &Store) {
    use crate::store::terminals::OpenTerminal;
    let terminal = |id: &str, sid: &str, replica: &str| OpenTerminal {
        id: id.into(),
        sid: sid.into(),
        replica_id: replica.into(),
        actor_id: Some("u1".into()),
        actor_name: Some("alice".into()),
        client_address: None,
        user_agent: None,
        device_id: "d1".into(),
        device_name: "gamma".into(),
        command: Some("top".into()),
        opened_at: 5,
    };
    store
        .insert_open_terminal(&terminal("t1", "s7", "a"))
        .await
        .unwrap();
    store
        .insert_open_terminal(&terminal("t2", "s8", "b"))
        .await
        .unwrap();
    assert_eq!(
        store.open_terminals("a").await.unwrap(),
        [terminal("t1", "s7", "a")]
    );
    // Only the replica's own row goes.
    store.delete_open_terminal("s7", "b").await.unwrap();
    assert_eq!(store.open_terminals("a").await.unwrap().len(), 1);
    store.delete_open_terminal("s7", "a").await.unwrap();
    assert!(store.open_terminals("a").await.unwrap().is_empty());
    assert_eq!(store.open_terminals("b").await.unwrap().len(), 1);

    let info = session_info;
    store.insert_terminal_session(&info("s8"), 1_000).await.unwrap();
    store
        .insert_terminal_session(&info("s8-resumed-9"), 2_000)
        .await
        .unwrap();
    store.insert_terminal_session(&info("s80"), 3_000).await.unwrap();
    let unfinished = store.unfinished_terminal_sessions("s8").await.unwrap();
    let sids: Vec<&str> = unfinished.iter().map(|r| r.sid.as_str()).collect();
    assert_eq!(sids, ["s8", "s8-resumed-9"]);
    store.end_terminal_session("s8", 1_500, 10).await.unwrap();
    assert_eq!(store.unfinished_terminal_sessions("s8").await.unwrap().len(), 1);
    // Re-attached: the same row is open again, its start and byte count kept.
    assert!(store.reopen_terminal_session("s8").await.unwrap());
    let reopened = store.terminal_session("s8").await.unwrap().unwrap();
    assert_eq!(
        (reopened.started_at, reopened.ended_at, reopened.bytes_out),
        (1_000, None, 10)
    );
    assert!(!store.reopen_terminal_session("no-such").await.unwrap());
}

async fn access_tokens(store: &Store) {
    let alice = store.user_by_name("alice").await.unwrap().unwrap();
    let later = unix_millis() + 60_000;
    store
        .create_access_token(
            "t1",
            &alice.id,
            "ci",
            "token-hash",
            "devices.read,audit.read",
            later,
        )
        .await
        .unwrap();
    let (user, token_id, permissions) = store.access_token_user("token-hash").await.unwrap().unwrap();
    assert_eq!(
        (user.id, token_id.as_str(), permissions.as_str()),
        (alice.id.clone(), "t1", "devices.read,audit.read")
    );
    assert!(store.access_token_active("t1").await.unwrap());
    assert_eq!(
        store.access_tokens(&alice.id).await.unwrap()[0].permissions.len(),
        2
    );
    store.revoke_access_token("t1").await.unwrap();
    assert!(!store.access_token_active("t1").await.unwrap());
    assert!(store.access_token_user("token-hash").await.unwrap().is_none());
}

/// Enrolment tokens: spending, expiry and revocation.
async fn install_tokens(store: &Store) {
    use crate::store::install_tokens::Spend;
    let now = unix_millis();
    let tags = vec!["site-a".to_owned()];
    store
        .create_install_token("t1", "h1", &tags, 1, "alice", now, now + 60_000)
        .await
        .unwrap();
    store
        .create_install_token("t2", "h2", &tags, 5, "alice", now, now + 1)
        .await
        .unwrap();
    store
        .create_install_token("t3", "h3", &[], 5, "alice", now, now + 60_000)
        .await
        .unwrap();
    assert_eq!(
        store.spend_install_token("h1", now).await.unwrap(),
        Spend::Spent {
            id: "t1".into(),
            tags: tags.clone()
        }
    );
    assert_eq!(
        store.spend_install_token("h1", now).await.unwrap(),
        Spend::UsedUp {
            id: "t1".into(),
            max_uses: 1
        }
    );
    assert_eq!(
        store.spend_install_token("h2", now + 1).await.unwrap(),
        Spend::Expired { id: "t2".into() }
    );
    assert!(store.revoke_install_token("t3", now).await.unwrap());
    assert!(!store.revoke_install_token("t3", now).await.unwrap());
    assert_eq!(
        store.spend_install_token("h3", now).await.unwrap(),
        Spend::Revoked { id: "t3".into() }
    );
    assert_eq!(
        store.spend_install_token("nope", now).await.unwrap(),
        Spend::Unknown
    );
    let listed = store.install_tokens().await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(store.install_token("t1").await.unwrap().unwrap().uses, 1);
}

/// SQLite only: withdrawing tokens with their account.
#[tokio::test]
async fn disabling_revokes_tokens_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("hub.db")).await.unwrap();
    store.upsert_user("alice", "hash", false).await.unwrap();
    let alice = store.user_by_name("alice").await.unwrap().unwrap();
    let later = unix_millis() + 60_000;
    for (id, hash) in [("t1", "h1"), ("t2", "h2")] {
        store
            .create_access_token(id, &alice.id, id, hash, "view_devices", later)
            .await
            .unwrap();
    }
    store.revoke_access_token("t2").await.unwrap();
    assert_eq!(store.disable_user(&alice.id).await.unwrap(), ["t1"]);
    store.set_user_disabled(&alice.id, false).await.unwrap();
    assert!(store.access_token_user("h1").await.unwrap().is_none());
    assert!(!store.access_token_active("t1").await.unwrap());

    // An account disabled the old way (flag only) loses its tokens at the next start.
    store
        .create_access_token("t3", &alice.id, "t3", "h3", "view_devices", later)
        .await
        .unwrap();
    store.set_user_disabled(&alice.id, true).await.unwrap();
    assert_eq!(store.revoke_tokens_of_disabled_users().await.unwrap(), 1);
    store.set_user_disabled(&alice.id, false).await.unwrap();
    assert!(store.access_token_user("h3").await.unwrap().is_none());
}

#[tokio::test]
async fn storage_on_sqlite() {
    let directory = tempfile::tempdir().unwrap();
    let store = Store::open(None, &directory.path().join("hub.db")).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    check_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_on_postgres() {
    let postgres = tokio::task::spawn_blocking(tether_e2e::Postgres::start)
        .await
        .unwrap();
    let url = postgres.create_database("storage");
    let store = Store::open(Some(&url), std::path::Path::new("unused"))
        .await
        .unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    check_all(&store).await;

    // Two replicas appending at once keep one gapless, linear chain (the advisory lock).
    let other = Store::open_postgres(&url).await.unwrap();
    let start = store.audit_events_after(0, 1000).await.unwrap().len();
    let append = |store: Store| async move {
        for _ in 0..20 {
            store
                .append_audit_event(|seq, prev| event(seq, prev, "login", unix_millis()))
                .await
                .unwrap();
        }
    };
    let (first, second) = tokio::join!(tokio::spawn(append(store.clone())), tokio::spawn(append(other)));
    first.unwrap();
    second.unwrap();
    let events = store.audit_events_after(0, 1000).await.unwrap();
    assert_eq!(events.len(), start + 40);
    assert!(verify(store.audit_anchor().await.unwrap(), events).ok);

    // Two replicas running recording retention at once: each session is deleted by one.
    let other = Store::open_postgres(&url).await.unwrap();
    for n in 0..10 {
        recordings::recorded_session(&store, &format!("race-{n}"), 1_000).await;
    }
    let prune =
        |store: Store| async move { store.delete_terminal_sessions_ended_before(2_000).await.unwrap() };
    let (first, second) = tokio::join!(tokio::spawn(prune(store.clone())), tokio::spawn(prune(other)));
    let mut deleted = [first.unwrap(), second.unwrap()].concat();
    deleted.retain(|sid| sid.starts_with("race-"));
    deleted.sort();
    let expected: Vec<String> = (0..10).map(|n| format!("race-{n}")).collect();
    assert_eq!(deleted, expected, "each session deleted once");
}
