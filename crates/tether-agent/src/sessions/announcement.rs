//! What a new connection to the hub starts with: the shells kept for resuming.

use tether_proto::{Envelope, control::Control, version};

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

    /// The kept shells whose session chose version 3: the hub resumes them without a new
    /// handshake, so the new connection speaks compact frames to them from the start.
    pub fn compact_shells(&self) -> impl Iterator<Item = &str> {
        self.shells
            .keys()
            .filter(|sid| self.versions.get(*sid) == Some(&version::COMPACT))
            .map(String::as_str)
    }
}
