//! `USER@DEVICE` for `tether terminal` and `tether exec`: asks the device for a shell as a
//! local user other than its default (the agent allows those `terminal.allowed_users` lists).
//!
//! Device names are the devices' host names and may contain `@`, so a device whose name is the
//! whole argument wins; otherwise the argument splits on its first `@`, when the part before it
//! is a user name.

use anyhow::{Result, bail};
use tether_proto::{api::Device, shell::valid_local_user, version};

use crate::{api::Api, resolve, session::Session};

/// The device `query` names, and the local user it asks for (None: the device's default).
pub async fn find(api: &Api, query: &str) -> Result<(Device, Option<String>)> {
    let Some((user, device)) = split(query) else {
        return Ok((resolve::find(api, query).await?, None));
    };
    match resolve::find(api, query).await {
        Ok(found) => return Ok((found, None)),
        // Only "nothing by that name" falls back: an ambiguous name stays an error.
        Err(error) if !error.to_string().starts_with("no device matches") => return Err(error),
        Err(_) => {}
    }
    Ok((resolve::find(api, device).await?, Some(user.to_owned())))
}

/// `USER@DEVICE` split on the first `@`, when USER is a user name and DEVICE is not empty.
fn split(query: &str) -> Option<(&str, &str)> {
    let (user, device) = query.split_once('@')?;
    (valid_local_user(user) && !device.is_empty()).then_some((user, device))
}

/// Refuses a local user on a device that cannot choose one (a stock mender-connect speaks
/// protocol version 1, which has no way to ask); closes the session first.
pub async fn require_support(session: Session, device: &Device, local_user: Option<&str>) -> Result<Session> {
    let Some(user) = local_user.filter(|_| session.version < version::TETHER) else {
        return Ok(session);
    };
    let spoken = session.version;
    session.close().await;
    bail!(
        "the agent on {} speaks protocol version {spoken} only (a stock mender-connect?): it cannot \
         run a shell as another local user ({user}); use `tether terminal {}`",
        device.name,
        device.name
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_name_before_the_first_at_is_split_off() {
        assert_eq!(split("root@pump-17"), Some(("root", "pump-17")));
        assert_eq!(split("svc.backup@0190a1b2"), Some(("svc.backup", "0190a1b2")));
        // The first `@` only: the rest is the device, whatever it holds.
        assert_eq!(split("daemon@lab@site"), Some(("daemon", "lab@site")));
    }

    #[test]
    fn anything_else_is_a_device_name() {
        assert_eq!(split("pump-17"), None);
        assert_eq!(split("@pump-17"), None);
        assert_eq!(split("root@"), None);
        assert_eq!(split("not a user@pump-17"), None);
        assert_eq!(split("-rf@pump-17"), None);
        assert_eq!(split(&format!("{}@pump-17", "u".repeat(33))), None);
    }
}
