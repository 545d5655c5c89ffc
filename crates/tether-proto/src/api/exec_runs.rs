//! Runs of one command across a device group (`tether exec --group`): the hub resolves the
//! group to the devices the caller may see, records the run, and the CLI then runs the command
//! on each of them through the ordinary per-device session.

use serde::{Deserialize, Serialize};

/// `POST /exec-runs`: the group (`tag:NAME`, `*` or a device id, as in a grant) and the command
/// line that is about to run on it (for the audit log; each device's session carries its own).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewExecRun {
    pub group: String,
    pub command: String,
}

/// The answer: the group as the hub reads it and its accepted devices that the caller may see,
/// ordered by name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecRun {
    pub group: String,
    pub devices: Vec<ExecRunDevice>,
}

/// One device of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecRunDevice {
    pub id: String,
    pub name: String,
    /// Whether the device was connected to the hub when the run started.
    pub online: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::round_trip;

    #[test]
    fn the_exec_run_shapes_are_pinned() {
        let request: NewExecRun = round_trip(r#"{"group":"tag:site-a","command":"uptime"}"#);
        assert_eq!(request.group, "tag:site-a");
        let run: ExecRun = round_trip(
            r#"{"group":"tag:site-a","devices":[{"id":"d1","name":"pump-1","online":true},
                {"id":"d2","name":"pump-2","online":false}]}"#,
        );
        assert_eq!(run.devices.len(), 2);
        assert!(!run.devices[1].online);
        round_trip::<ExecRun>(r#"{"group":"*","devices":[]}"#);
    }
}
