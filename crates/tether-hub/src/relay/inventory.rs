//! A device's control `inventory` (a Tether agent's report of itself, see
//! `tether_proto::inventory`): checked, stored with the device, at most once per
//! [`MIN_INTERVAL`] per connection (an agent sends it at connect and when it changed, every few
//! minutes at most; a device sending more costs the database nothing).

use std::time::Duration;

use tether_proto::{Envelope, control::Control};
use tokio::time::Instant;

use crate::{domain::device::DeviceRecord, relay::Relay};

/// Inventories closer together than this on one connection are ignored.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);

/// Stores the inventory `envelope` carries; `last` is when this connection's previous one was
/// stored. Malformed input is logged and ignored: the connection stays up.
pub async fn record(state: &Relay, device: &DeviceRecord, envelope: &Envelope, last: &mut Option<Instant>) {
    if last.is_some_and(|at| at.elapsed() < MIN_INTERVAL) {
        tracing::warn!(
            "device {} sent inventories less than {} s apart; ignoring this one",
            device.id,
            MIN_INTERVAL.as_secs()
        );
        return;
    }
    let inventory = match Control::from_envelope(envelope) {
        Ok(Control::Inventory(inventory)) => inventory,
        Ok(_) | Err(_) => {
            tracing::warn!("device {} sent a malformed inventory", device.id);
            return;
        }
    };
    *last = Some(Instant::now());
    let json = match serde_json::to_string(&inventory) {
        Ok(json) => json,
        Err(error) => {
            tracing::warn!("device {}: cannot store its inventory: {error}", device.id);
            return;
        }
    };
    let stored = state
        .store
        .set_device_inventory(
            &device.id,
            &json,
            inventory.os_name.as_deref(),
            inventory.architecture.as_deref(),
        )
        .await;
    match stored {
        Ok(_) => tracing::debug!(
            "device {} reported its inventory ({} bytes)",
            device.id,
            envelope.body.len()
        ),
        Err(error) => tracing::warn!("device {}: cannot store its inventory: {error:#}", device.id),
    }
}
