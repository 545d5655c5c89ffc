//! A network namespace joined to this one by a veth pair, for partitions: taking the host end of
//! the link down makes packets vanish both ways without closing anything, as a cellular link
//! that drops. Addresses are self-made (`10.231.N.1` here, `10.231.N.2` inside); needs root and
//! `ip netns` ([`Namespace::available`] says whether this machine can).

use std::{
    net::Ipv4Addr,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Namespace {
    pub name: String,
    /// The host end's address (what a process inside dials to reach this namespace).
    pub host_address: Ipv4Addr,
    host_link: String,
}

fn ip(arguments: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(arguments)
        .output()
        .map_err(|e| format!("ip {}: {e}", arguments.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            arguments.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl Namespace {
    /// Why namespaces cannot be used here, if they cannot (not root, no `ip netns`).
    pub fn unavailable() -> Option<String> {
        if !crate::is_root() {
            return Some("not running as root".into());
        }
        match Command::new("ip").args(["netns", "list"]).output() {
            Ok(output) if output.status.success() => None,
            Ok(output) => Some(format!(
                "`ip netns` fails: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )),
            Err(error) => Some(format!("no `ip` command: {error}")),
        }
    }

    /// Creates the namespace and its link (up).
    pub fn create() -> Result<Namespace, String> {
        let n = (std::process::id() % 200 + NEXT.fetch_add(1, Ordering::SeqCst)) % 250 + 1;
        let name = format!("tether-e2e-{}-{n}", std::process::id());
        let host_link = format!("tth{}{n}", std::process::id() % 1000);
        let inner_link = format!("ttd{}{n}", std::process::id() % 1000);
        let host_address = Ipv4Addr::new(10, 231, n as u8, 1);
        let inner_address = Ipv4Addr::new(10, 231, n as u8, 2);
        ip(&["netns", "add", &name])?;
        let namespace = Namespace {
            name: name.clone(),
            host_address,
            host_link: host_link.clone(),
        };
        ip(&[
            "link",
            "add",
            &host_link,
            "type",
            "veth",
            "peer",
            "name",
            &inner_link,
        ])?;
        ip(&["link", "set", &inner_link, "netns", &name])?;
        ip(&["addr", "add", &format!("{host_address}/24"), "dev", &host_link])?;
        ip(&["link", "set", &host_link, "up"])?;
        let inside = |arguments: &[&str]| {
            let mut all = vec!["netns", "exec", &name, "ip"];
            all.extend_from_slice(arguments);
            ip(&all)
        };
        inside(&["addr", "add", &format!("{inner_address}/24"), "dev", &inner_link])?;
        inside(&["link", "set", &inner_link, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok(namespace)
    }

    /// Takes the link down (a partition: nothing passes, nothing is closed) or brings it up.
    pub fn link_down(&self, down: bool) {
        let state = if down { "down" } else { "up" };
        ip(&["link", "set", &self.host_link, state]).expect("set the link state");
        if !down {
            // The address of a link that went down keeps its route on Linux; make sure.
            let _ = ip(&[
                "addr",
                "add",
                &format!("{}/24", self.host_address),
                "dev",
                &self.host_link,
            ]);
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_link]);
    }
}
