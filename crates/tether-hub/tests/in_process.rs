//! A hub served in the test process through the library (`tether_hub::serve_until`), as bore's
//! and sshx's tests do: no binary, a listener the test binds, a shutdown the test chooses. The
//! end-to-end suite (`tether-e2e`) still runs the real binaries; this checks the library seam.

use std::time::Duration;

use tether_hub::config::HubConfig;
use tether_net::{HubUrl, TrustOptions};
use tether_proto::api;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_runs_in_process_and_stops_when_told() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let config = HubConfig {
        data_dir: directory.path().join("hub"),
        ..HubConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready, listening) = tokio::sync::oneshot::channel();
    let hub = tokio::spawn(tether_hub::serve_until(
        config,
        listener,
        async {
            let _ = stopped.await;
        },
        Some(ready),
    ));
    let listening = listening.await.expect("the hub reports that it listens");
    let url = HubUrl::parse(&listening.url).expect("the hub's URL");
    let tls = tether_net::client_config(&TrustOptions {
        ca_file: Some(listening.certificate.display().to_string()),
        fingerprint: None,
    })
    .expect("a client trusting the hub's own certificate");
    let request = |path: &'static str| {
        tether_net::http_request(
            &url,
            tls.clone(),
            None,
            "GET",
            path,
            &[],
            b"",
            Duration::from_secs(20),
        )
    };

    let (status, body) = request("/healthz").await.expect("GET /healthz");
    assert_eq!((status, body.as_slice()), (200, b"ok".as_slice()));

    // The management API refuses a caller without a token, in its one error shape.
    let (status, body) = request(api::DEVICES_PATH).await.expect("GET devices");
    assert_eq!(status, 401);
    let error: api::ApiError = serde_json::from_slice(&body).expect("a JSON error body");
    assert!(error.error.contains("bearer token"), "{}", error.error);

    stop.send(()).expect("the hub still runs");
    hub.await
        .expect("the hub task did not panic")
        .expect("the hub stopped cleanly");
}
