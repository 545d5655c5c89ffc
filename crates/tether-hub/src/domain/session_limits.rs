//! Caps on concurrent user sessions at the hub (terminal, exec, file and port-forward sessions:
//! every user WebSocket of [`crate::relay::user_leg`], and every transfer of the HTTP file API),
//! per user and per device. Each session holds
//! a [`SessionSlot`] for its lifetime; a session beyond a cap is refused before the upgrade,
//! with a message naming the limit, and audited.
//!
//! The counts are this replica's: with several replicas behind NATS a user can hold up to
//! (replicas × `max_sessions_per_user`) sessions (see `docs/security.md`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use crate::{config::HubConfig, domain::device::DeviceRecord};

#[derive(Default)]
struct Counts {
    by_user: HashMap<String, usize>,
    by_device: HashMap<String, usize>,
}

pub struct SessionLimits {
    per_user: usize,
    per_device: usize,
    counts: Mutex<Counts>,
}

/// One session's place under the caps; dropping it frees the place.
pub struct SessionSlot {
    limits: Arc<SessionLimits>,
    user_id: String,
    device_id: String,
}

impl SessionLimits {
    pub fn new(config: &HubConfig) -> Self {
        SessionLimits {
            per_user: config.max_sessions_per_user.max(1),
            per_device: config.max_sessions_per_device.max(1),
            counts: Mutex::new(Counts::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A place for one more session of `user` (named `user_name`) on `device`, or the refusal.
    pub fn acquire(
        self: &Arc<Self>,
        user_id: &str,
        user_name: &str,
        device: &DeviceRecord,
    ) -> Result<SessionSlot, (&'static str, String)> {
        let mut counts = self.lock();
        let of_user = counts.by_user.get(user_id).copied().unwrap_or(0);
        if of_user >= self.per_user {
            return Err((
                "max_sessions_per_user",
                format!(
                    "too many concurrent sessions: user {user_name} already has {of_user} \
                     (max_sessions_per_user = {})",
                    self.per_user
                ),
            ));
        }
        let of_device = counts.by_device.get(&device.id).copied().unwrap_or(0);
        if of_device >= self.per_device {
            return Err((
                "max_sessions_per_device",
                format!(
                    "too many concurrent sessions: device {} already has {of_device} \
                     (max_sessions_per_device = {})",
                    device.name, self.per_device
                ),
            ));
        }
        *counts.by_user.entry(user_id.to_owned()).or_default() += 1;
        *counts.by_device.entry(device.id.clone()).or_default() += 1;
        Ok(SessionSlot {
            limits: Arc::clone(self),
            user_id: user_id.to_owned(),
            device_id: device.id.clone(),
        })
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut guard = self.limits.lock();
        let counts = &mut *guard;
        for (map, key) in [
            (&mut counts.by_user, &self.user_id),
            (&mut counts.by_device, &self.device_id),
        ] {
            if let Some(count) = map.get_mut(key) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    map.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str) -> DeviceRecord {
        DeviceRecord::accepted_for_test(id, &[])
    }

    #[test]
    fn caps_per_user_and_per_device_free_on_drop() {
        let config = HubConfig {
            max_sessions_per_user: 2,
            max_sessions_per_device: 3,
            ..HubConfig::default()
        };
        let limits = Arc::new(SessionLimits::new(&config));
        let (a, b) = (device("a"), device("b"));
        let first = limits.acquire("u", "alice", &a).unwrap();
        let _second = limits.acquire("u", "alice", &b).unwrap();
        let (limit, why) = limits.acquire("u", "alice", &a).err().unwrap();
        assert_eq!(limit, "max_sessions_per_user");
        assert!(why.contains("max_sessions_per_user = 2"), "{why}");
        drop(first);
        let _third = limits.acquire("u", "alice", &a).unwrap();
        let _other = limits.acquire("v", "bob", &a).unwrap();
        let _more = limits.acquire("w", "carol", &a).unwrap();
        let (limit, _) = limits.acquire("x", "dave", &a).err().unwrap();
        assert_eq!(limit, "max_sessions_per_device");
    }
}
