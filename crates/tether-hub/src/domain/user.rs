//! A user account, as the hub knows it.

#[derive(Debug, Clone, PartialEq)]
/// An account: its name, password hash and flags.
pub struct UserRecord {
    pub id: String,
    pub name: String,
    pub password_hash: String,
    pub admin: bool,
    pub disabled: bool,
}
