//! The permissions a caller can hold: every action the hub authorizes, by name.

/// Everything a caller can ask to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ViewDevices,
    ManageDevices,
    Terminal,
    FileRead,
    FileWrite,
    PortForward,
    ViewAudit,
    ViewRecordings,
    ManageUsers,
    ApproveAccess,
    /// Hold the device leg of a device (only that device itself may).
    ConnectAsDevice,
}

/// The permissions a token can carry, by name.
pub const PERMISSIONS: &[(&str, Action)] = &[
    ("view_devices", Action::ViewDevices),
    ("manage_devices", Action::ManageDevices),
    ("terminal", Action::Terminal),
    ("file_read", Action::FileRead),
    ("file_write", Action::FileWrite),
    ("port_forward", Action::PortForward),
    ("view_audit", Action::ViewAudit),
    ("view_recordings", Action::ViewRecordings),
    ("manage_users", Action::ManageUsers),
    ("approve_access", Action::ApproveAccess),
];

impl Action {
    pub fn name(self) -> &'static str {
        PERMISSIONS
            .iter()
            .find(|(_, action)| *action == self)
            .map(|(name, _)| *name)
            .unwrap_or("connect_as_device")
    }

    pub fn parse(name: &str) -> Option<Action> {
        PERMISSIONS
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, action)| *action)
    }
    pub fn describe(self) -> &'static str {
        match self {
            Action::ViewDevices => "view devices",
            Action::ManageDevices => "manage devices",
            Action::Terminal => "open a terminal",
            Action::FileRead => "read files",
            Action::FileWrite => "write files",
            Action::PortForward => "forward ports",
            Action::ViewAudit => "view the audit log",
            Action::ViewRecordings => "view session recordings",
            Action::ManageUsers => "manage users",
            Action::ApproveAccess => "approve access requests",
            Action::ConnectAsDevice => "connect as the device",
        }
    }
}
