//! The per-connection, per-direction session table of the compact encoding: which session id
//! (and which stamped user) each small handle stands for, with a bound on how many there are.
//!
//! The sender of a direction allocates the handles and announces each binding in the frame that
//! first uses it (`BIND`); the receiver mirrors the table from those frames. Each direction has
//! its own table, so the two ends never race for a handle.

use std::collections::HashMap;

use super::Error;

/// Sessions a connection may have bound at once, per direction (the hub's default cap is 256
/// sessions per device). Handles run from 1 to this; handle 0 is the empty sid.
pub const MAX_SESSIONS: usize = 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub sid: String,
    /// The user stamped on the session's messages; empty until one is known.
    pub user: String,
}

/// Handles in use, indexed by handle. Nothing is allocated until a session is bound, so an idle
/// connection's tables cost no memory beyond their own size.
#[derive(Debug, Clone)]
pub struct Table {
    entries: Vec<Option<Entry>>,
    limit: usize,
}

impl Table {
    pub fn new(limit: usize) -> Self {
        Table {
            entries: Vec::new(),
            limit,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn get(&self, handle: u32) -> Option<&Entry> {
        if handle == 0 {
            return None;
        }
        self.entries.get(handle as usize - 1)?.as_ref()
    }

    fn get_mut(&mut self, handle: u32) -> Option<&mut Entry> {
        if handle == 0 {
            return None;
        }
        self.entries.get_mut(handle as usize - 1)?.as_mut()
    }

    /// Binds `handle` (1..=limit) to `entry`, replacing what it named before.
    pub fn bind(&mut self, handle: u32, entry: Entry) -> Result<(), Error> {
        let index = (handle as usize)
            .checked_sub(1)
            .filter(|index| *index < self.limit)
            .ok_or(Error::HandleOutOfRange {
                handle: handle.into(),
                limit: self.limit,
            })?;
        if self.entries.len() <= index {
            self.entries.resize(index + 1, None);
        }
        self.entries[index] = Some(entry);
        Ok(())
    }

    /// Frees `handle`; the table shrinks back when its last handles are free.
    pub fn release(&mut self, handle: u32) -> Option<Entry> {
        let index = (handle as usize).checked_sub(1)?;
        let entry = self.entries.get_mut(index)?.take();
        while self.entries.last().is_some_and(Option::is_none) {
            self.entries.pop();
        }
        if self.entries.is_empty() {
            self.entries = Vec::new();
        }
        entry
    }

    /// The lowest free handle, so that handles stay one byte long as long as possible.
    fn free_handle(&self) -> Option<u32> {
        let index = self
            .entries
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.entries.len());
        (index < self.limit).then(|| index as u32 + 1)
    }
}

/// The sender's side: also finds a session's handle by its sid.
#[derive(Debug, Clone)]
pub struct SenderTable {
    table: Table,
    by_sid: HashMap<String, u32>,
}

/// What the sender needs to write a frame's header for a session.
pub struct Slot {
    pub handle: u32,
    /// The binding must be (re)announced in this frame.
    pub announce: bool,
}

impl SenderTable {
    pub fn new(limit: usize) -> Self {
        SenderTable {
            table: Table::new(limit),
            by_sid: HashMap::new(),
        }
    }

    pub fn entry(&self, handle: u32) -> Option<&Entry> {
        self.table.get(handle)
    }

    pub fn len(&self) -> usize {
        self.by_sid.len()
    }

    /// The handle of `sid`, bound now if it has none. With `user` given and different from the
    /// stamped one, the session's user changes and the binding is announced again.
    pub fn slot(&mut self, sid: &str, user: Option<&str>) -> Result<Slot, Error> {
        if sid.is_empty() {
            return Ok(Slot {
                handle: 0,
                announce: false,
            });
        }
        if let Some(&handle) = self.by_sid.get(sid) {
            let entry = self.table.get_mut(handle).ok_or(Error::UnknownHandle(handle))?;
            let announce = match user {
                Some(user) if user != entry.user => {
                    user.clone_into(&mut entry.user);
                    true
                }
                _ => false,
            };
            return Ok(Slot { handle, announce });
        }
        let handle = self
            .table
            .free_handle()
            .ok_or(Error::TooManySessions(self.table.limit()))?;
        let entry = Entry {
            sid: sid.to_owned(),
            user: user.unwrap_or_default().to_owned(),
        };
        self.table.bind(handle, entry)?;
        self.by_sid.insert(sid.to_owned(), handle);
        Ok(Slot {
            handle,
            announce: true,
        })
    }

    /// Frees the handle of `sid`, if it has one. The receiver's table still names the session
    /// under that handle until the handle is bound again, which the next frame using it does.
    pub fn release_sid(&mut self, sid: &str) {
        if let Some(handle) = self.by_sid.get(sid).copied() {
            self.release(handle);
        }
    }

    pub fn release(&mut self, handle: u32) {
        if let Some(entry) = self.table.release(handle) {
            self.by_sid.remove(&entry.sid);
        }
        if self.by_sid.is_empty() {
            self.by_sid = HashMap::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_the_lowest_free_and_bounded() {
        let mut table = SenderTable::new(2);
        assert_eq!(table.slot("", None).unwrap().handle, 0);
        let a = table.slot("a", None).unwrap();
        assert_eq!((a.handle, a.announce), (1, true));
        assert_eq!(table.slot("b", None).unwrap().handle, 2);
        assert!(!table.slot("a", None).unwrap().announce);
        assert_eq!(table.slot("c", None).err(), Some(Error::TooManySessions(2)));
        table.release(1);
        assert_eq!(table.slot("c", None).unwrap().handle, 1);
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn a_new_user_announces_the_binding_again() {
        let mut table = SenderTable::new(4);
        table.slot("a", None).unwrap();
        assert!(table.slot("a", Some("u")).unwrap().announce);
        assert!(!table.slot("a", Some("u")).unwrap().announce);
        assert_eq!(table.entry(1).unwrap().user, "u");
    }

    #[test]
    fn the_receiver_table_refuses_handles_beyond_its_limit() {
        let mut table = Table::new(3);
        assert!(table.bind(3, Entry::default()).is_ok());
        assert_eq!(
            table.bind(4, Entry::default()),
            Err(Error::HandleOutOfRange { handle: 4, limit: 3 })
        );
        assert!(table.bind(0, Entry::default()).is_err());
        assert!(table.release(3).is_some());
        assert!(table.get(3).is_none());
    }
}
