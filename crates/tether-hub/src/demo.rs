//! `tether-hub demo`: a hub on embedded defaults plus a local `tether-agent`, accepted through a
//! one-time provisioning key, so that a newcomer has a working terminal within a minute.

use std::{net::SocketAddr, path::PathBuf, process::Stdio};

use anyhow::Context as _;

use crate::{config::HubConfig, domain::passwords, service::secrets, store::Store};

const DEMO_USER: &str = "demo";
const DEMO_DEVICE: &str = "demo-device";

pub async fn run(data_dir: PathBuf, mut config: HubConfig, listen: SocketAddr) -> anyhow::Result<()> {
    secrets::secure_data_dir(&data_dir)?;
    let provisioning_key = passwords::generate();
    config.provisioning_key = Some(provisioning_key.clone());
    let password = passwords::generate();
    {
        let store = Store::open_sqlite(&data_dir.join("hub.db")).await?;
        store
            .upsert_user(DEMO_USER, &passwords::hash(&password)?, true)
            .await?;
    }

    let (ready_sender, ready) = tokio::sync::oneshot::channel();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let hub = tokio::spawn(crate::serve_until(
        config,
        listener,
        crate::shutdown_signal(),
        Some(ready_sender),
    ));
    let listening = match ready.await {
        Ok(listening) => listening,
        // The hub failed before listening: report its error.
        Err(_) => return hub.await.context("hub task")?,
    };

    let agent_dir = data_dir.join("demo-agent");
    secrets::private_dir(&agent_dir)?;
    // A directory the demo device lets operators copy files to and from.
    let files_dir = std::path::absolute(data_dir.join("demo-files"))?;
    std::fs::create_dir_all(&files_dir)?;
    let agent_config = agent_dir.join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            "hubs = [{url:?}]\nca_file = {ca:?}\ndata_dir = {dir:?}\nprovisioning_key = {key:?}\n\n\
             [identity]\nhostname = {DEMO_DEVICE:?}\n\n\
             [file_transfer]\nenabled = true\nroots = [{files:?}]\n\n\
             [port_forward]\nenabled = true\n",
            files = files_dir.display().to_string(),
            url = listening.url,
            ca = listening.certificate.display().to_string(),
            dir = agent_dir.display().to_string(),
            key = provisioning_key,
        ),
    )?;
    let agent_binary = std::env::current_exe()?.with_file_name("tether-agent");
    let log = std::fs::File::create(agent_dir.join("agent.log"))?;
    let mut agent = tokio::process::Command::new(&agent_binary)
        .arg("--config")
        .arg(&agent_config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (build it with `cargo build --release --bins`)",
                agent_binary.display()
            )
        })?;

    let cli = std::env::current_exe()?.with_file_name("tether");
    println!();
    println!(
        "Tether demo: a hub on {} and a local device named {DEMO_DEVICE}.",
        listening.url
    );
    println!("In another terminal:");
    println!(
        "  export TETHER_HUB={} TETHER_CA={}",
        listening.url,
        listening.certificate.display()
    );
    println!(
        "  {} login {DEMO_USER}        # password: {password}",
        cli.display()
    );
    println!("  {} devices list", cli.display());
    println!(
        "  {} terminal {DEMO_DEVICE}   # leave with Enter ~ .",
        cli.display()
    );
    println!(
        "Agent log: {}. Stop the demo with Ctrl-C.",
        agent_dir.join("agent.log").display()
    );

    let result = tokio::select! {
        result = hub => result.context("hub task")?,
        status = agent.wait() => Err(anyhow::anyhow!("the demo agent exited ({}); see its log", status?)),
    };
    let _ = agent.start_kill();
    result
}
