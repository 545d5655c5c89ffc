//! The agent reaches its hub through an HTTP proxy (`HTTPS_PROXY`, `CONNECT`), as devices on
//! corporate networks must: the device only ever dials the proxy, and TLS still runs end to end
//! to the hub.

use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
};

use tether_e2e::{Hub, HubOptions, Proc, binary, hermetic};

/// A minimal CONNECT proxy on loopback that records the requests it served.
fn connect_proxy() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
    let port = listener.local_addr().expect("proxy address").port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().expect("clone"));
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    return;
                }
                // Skip the rest of the head.
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                seen.lock().unwrap().push(request_line.trim().to_owned());
                let target = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                let mut client = client;
                let Ok(server) = TcpStream::connect(&target) else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
                    return;
                };
                let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                let (mut client_reader, mut server_writer) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut client_reader, &mut server_writer);
                    let _ = server_writer.shutdown(std::net::Shutdown::Write);
                });
                let (mut server_reader, mut client_writer) = (server, client);
                let _ = std::io::copy(&mut server_reader, &mut client_writer);
                let _ = client_writer.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (port, requests)
}

#[test]
fn the_agent_dials_its_hub_through_an_https_proxy() {
    let hub = Hub::start(HubOptions::default());
    let cli = hub.user_cli("alice", true);
    let (proxy_port, requests) = connect_proxy();

    let directory = tempfile::tempdir().expect("temp dir");
    let name = format!("proxied-{}", std::process::id());
    let config = directory.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "hubs = [{url:?}]\nca_file = {ca:?}\ndata_dir = {data:?}\nreconnect_max_delay_secs = 2\n\n\
             [identity]\nhostname = {name:?}\n",
            url = hub.url,
            ca = hub.cert_path.display().to_string(),
            data = directory.path().join("data").display().to_string(),
        ),
    )
    .expect("agent config");
    let mut command = std::process::Command::new(binary("tether-agent"));
    hermetic(&mut command);
    command
        .arg("--config")
        .arg(&config)
        .env("HTTPS_PROXY", format!("http://127.0.0.1:{proxy_port}"));
    let _agent = Proc::spawn("agent", command, directory.path());

    cli.accept(&name);
    let output = cli.exec(&name, &["echo", "through-the-proxy"]);
    assert!(output.ok().contains("through-the-proxy"), "{output}");

    let hub_address = hub.url.trim_start_matches("https://").to_owned();
    let requests = requests.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .any(|r| *r == format!("CONNECT {hub_address} HTTP/1.1")),
        "the agent should have asked the proxy for {hub_address}: {requests:?}"
    );
    // Authentication and the WebSocket both went through the proxy.
    assert!(requests.len() >= 2, "{requests:?}");
}
