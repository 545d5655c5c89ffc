//! What a new connection to the hub starts with: the shells kept for resuming, and the features
//! its inventory reports.

use tether_proto::{Envelope, control::Control, inventory::feature, version};

use super::Sessions;

impl Sessions {
    /// The first message of a connection: the sessions whose shells are kept for resuming, so
    /// that the hub forgets the others (after an agent restart, none).
    pub fn announcement(&mut self) -> Envelope {
        self.shells.retain(|_, shell| shell.is_running());
        let mut sids: Vec<String> = self
            .shells
            .iter()
            .filter(|(_, shell)| shell.detached_since().is_some())
            .map(|(sid, _)| sid.clone())
            .collect();
        sids.sort();
        Control::Sessions { sids }.to_envelope("")
    }

    /// The features enabled on this device and the versions it speaks, as its inventory
    /// reports them (the same that its `accept`s say).
    pub fn features(&self) -> (Vec<String>, Vec<u32>) {
        let mut features = Vec::new();
        let enabled = [
            (self.terminal.enabled, feature::TERMINAL),
            (self.file_transfers.is_some(), feature::FILES),
            (self.port_forwards.enabled(), feature::FORWARDS),
            (self.consent.is_some(), feature::CONSENT),
        ];
        for (on, name) in enabled {
            if on {
                features.push(name.to_owned());
            }
        }
        (features, super::SPOKEN_VERSIONS.to_vec())
    }

    /// The kept shells whose session chose version 3: the hub resumes them without a new
    /// handshake, so the new connection speaks compact frames to them from the start.
    pub fn compact_shells(&self) -> impl Iterator<Item = &str> {
        self.shells
            .keys()
            .filter(|sid| self.versions.get(*sid) == Some(&version::COMPACT))
            .map(String::as_str)
    }
}
