//! Replicas sharing one real PostgreSQL as a production deployment starts them: two replicas
//! started at once on an empty database create exactly one first administrator;
//! `tether-hub backup` refuses PostgreSQL, pointing at the pg_dump procedure. (A replica that
//! dies under a terminal: `audit_replicas.rs`.)

use serde_json::Value;
use tether_e2e::{Hub, HubOptions, Postgres};

const FIRST_ADMINISTRATOR: &str = "created the first administrator: user admin, password ";

#[test]
fn two_replicas_starting_at_once_create_one_first_administrator() {
    let postgres = Postgres::start();
    let database = postgres.create_database("tether");
    let options = HubOptions::default().env("TETHER_HUB_DATABASE_URL", &database);
    let (mut a, mut b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| Hub::start(options.clone()));
        let b = scope.spawn(|| Hub::start(options.clone()));
        (a.join().expect("replica A"), b.join().expect("replica B"))
    });
    let printed: Vec<String> = [a.process().stdout(), b.process().stdout()]
        .iter()
        .flat_map(|text| {
            text.lines()
                .filter_map(|line| line.strip_prefix(FIRST_ADMINISTRATOR).map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        printed.len(),
        1,
        "exactly one replica creates the administrator: {printed:?}\nA: {}\nB: {}",
        a.log(),
        b.log()
    );
    let password = printed[0].trim_end_matches(" (shown once)");
    let cli = a.cli();
    cli.login("admin", password);
    let users: Vec<Value> = serde_json::from_str(cli.run(&["users", "list", "--json"]).ok()).unwrap();
    assert_eq!(users.len(), 1, "{users:#?}");
    assert_eq!(users[0]["name"], "admin");

    // Backups of PostgreSQL are pg_dump's.
    let backup = a.dir().join("backup.tar");
    let refused = a.run_hub(&["backup".as_ref(), backup.as_os_str()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("pg_dump") && stderr.contains("docs/operations.md"),
        "{stderr}"
    );
    assert!(!backup.exists());
}
