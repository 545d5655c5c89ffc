//! `tether proxy DEVICE [HOST:]PORT`: standard input and output connected to one TCP target as
//! reached from the device, for ssh's `ProxyCommand` (and anything else that speaks through a
//! pipe). It is one connection of the port forward protocol, relayed by the same code as a
//! `tether port-forward` connection ([`crate::port_forward::pump`]), so the device's allow-list,
//! the flow control for a stock (version 1) agent and the hub's audit are the same too.
//!
//! Standard output carries the relayed bytes and nothing else (ssh reads it); every message goes
//! to standard error. Unlike `port-forward` it does not reconnect: a lost session ends the
//! connection, which the program using it must see.

use std::sync::Arc;

use anyhow::{Result, bail};
use tether_proto::{port_forward::Transport, protocol};

use crate::{
    api::Api,
    hub::{HubOptions, authenticated},
    output::say,
    port_forward::{self, End, Link, Mapping, Opened, Shared, dispatch, open_connection, pump},
    resolve::find,
    session::Session,
};

/// The suffix `tether ssh-config` gives device names (`Host *.tether`); ssh hands the name as
/// typed (`%n`) to the proxy, which takes it off.
pub const SSH_SUFFIX: &str = ".tether";

pub const PROXY_HELP: &str = "\
DEVICE is a device id, a unique id prefix, or a device name; a trailing `.tether` is taken
off (ssh passes `NAME.tether` from the `tether ssh-config` block). TARGET is [HOST:]PORT as
reached from the device, HOST defaulting to 127.0.0.1 (the device itself); write IPv6 hosts
in brackets. The device's port_forward.allow decides which targets it dials.

Standard input is sent to the target and what the target sends is written to standard output;
the end of standard input is passed on as a half-close. Exits 0 once both sides are closed, 1
when the hub or the device refuses (the reason is on standard error) or the connection to the
hub is lost. Used as ssh's ProxyCommand: ssh -o 'ProxyCommand tether proxy %n %p' pump-17";

/// What the command line asked for.
pub struct Request {
    pub device: String,
    pub host: String,
    pub port: u16,
    pub verbose: bool,
}

/// `DEVICE` without the ssh suffix, if it has one (and is more than the suffix).
pub fn device_name(typed: &str) -> &str {
    match typed.strip_suffix(SSH_SUFFIX) {
        Some(name) if !name.is_empty() => name,
        _ => typed,
    }
}

pub async fn run(options: &HubOptions, request: Request) -> Result<i32> {
    let login = authenticated(options)?;
    let api = Api::new(&login.hub, Some(login.token.clone()))?;
    let device = find(&api, device_name(&request.device)).await?;
    let mut session = Session::open(&login, &device, protocol::PORT_FORWARD).await?;
    let link = Arc::new(Link::new(session.outgoing(), session.version));
    // Always verbose: the reasons a connection does not open are logged, and stderr is the
    // only place a ProxyCommand's user sees them.
    let shared = Shared::new(device.name.clone(), true);
    let mapping = Mapping {
        transport: Transport::Tcp,
        local_port: 0,
        remote_host: request.host.clone(),
        remote_port: request.port,
    };
    let id = shared.connection_id();
    let mut inbound = link.register(&id);
    let relay = async {
        // Waits for the device's answer: a refusal ends `tether proxy` before ssh writes a byte.
        let window = open_connection(&link, &shared, &id, &mapping, &mut inbound).await?;
        let opened = Opened::Answered(window);
        Some(
            pump(
                tokio::io::stdin(),
                tokio::io::stdout(),
                &id,
                &link,
                &mut inbound,
                opened,
            )
            .await,
        )
    };
    let outcome = tokio::select! {
        lost = dispatch(&mut session, &link) => Err(lost),
        counts = relay => Ok(counts),
    };
    // The `stop` echo and the last acks are queued before the close, on the same writer.
    session.close().await;
    let target = port_forward::host_port(&request.host, request.port);
    let counts = match outcome {
        Err(lost) => bail!("{}: {target}: {lost:#}", device.name),
        Ok(None) => bail!("{}: {target} was not opened", device.name),
        Ok(Some(counts)) => counts,
    };
    if request.verbose {
        say!(
            "tether: {target} on {}: {} (sent {} bytes, received {} bytes)",
            device.name,
            counts.end,
            counts.sent,
            counts.received
        );
    }
    Ok(match counts.end {
        End::ClosedByDevice | End::ClosedLocally | End::LocalSocketFailed => 0,
        // The device's error was printed by the pump.
        End::DeviceError | End::SessionLost => 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ssh_suffix_is_taken_off() {
        assert_eq!(device_name("pump-17.tether"), "pump-17");
        assert_eq!(device_name("pump-17"), "pump-17");
        assert_eq!(device_name("a.b.tether"), "a.b");
        assert_eq!(device_name(".tether"), ".tether");
        assert_eq!(device_name("pump.tethered"), "pump.tethered");
    }
}
