//! The HTTP face of the hub (axum): the TLS accept loop, routes, extractors, error mapping, and
//! one handler file per resource.

pub mod access;
pub mod audit;
pub mod connection_limits;
pub mod convert;
pub mod cookies;
pub mod detached;
pub mod device_auth;
pub mod device_connect;
pub mod devices;
pub mod error;
pub mod exec_runs;
pub mod extract;
pub mod file_descriptors;
pub mod file_download;
pub mod file_listing;
pub mod file_transfer;
pub mod files;
pub mod install;
pub mod install_tokens;
pub mod installer;
pub mod login;
pub mod monitoring;
pub mod observe;
pub mod openapi;
pub mod refusal_audit;
pub mod roles;
pub mod server;
pub mod session_search;
pub mod sessions;
pub mod state;
pub mod terminal;
pub mod two_factor;
pub mod users;
pub mod web_assets;
pub mod web_session;
