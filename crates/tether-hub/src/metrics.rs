//! The hub's Prometheus metrics (served at `/metrics`, docs/operations.md, *Monitoring*).
//!
//! One registry per process, reached through [`metrics()`]: every layer counts where the thing
//! happens (the device leg its bytes, the store its audit writes, the HTTP layer its requests)
//! without threading a handle through every constructor. The lowest layer: it imports nothing of
//! the hub. Values that are cheaper to read than to track (devices pending, the database pool,
//! NATS) are set by the scrape itself, just before encoding.

use std::sync::{
    LazyLock,
    atomic::{AtomicBool, Ordering},
};

use prometheus_client::{
    encoding::text::{encode_eof, encode_registry},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// Labels with fixed values (kinds, directions, protocols): no allocation per count.
type StaticLabels<const N: usize> = [(&'static str, &'static str); N];
/// Labels with a value known only at run time (an HTTP route and status).
type HttpLabels = [(&'static str, String); 2];

/// The kinds of session counted in `tether_sessions_active`.
pub const SESSION_KINDS: [&str; 4] = ["terminal", "exec", "file", "forward"];
/// The protocols of `tether_relay_bytes_total`, by the envelope's `proto`.
const PROTOCOLS: [&str; 5] = ["control", "shell", "file_transfer", "port_forward", "other"];

pub struct Metrics {
    registry: Registry,
    /// Encoded only when NATS is configured.
    nats_registry: Registry,
    pub devices_connected: Gauge,
    pub devices_pending: Gauge,
    sessions_active: Family<StaticLabels<1>, Gauge>,
    relay_bytes: Family<StaticLabels<2>, Counter>,
    auth_failures: Family<StaticLabels<1>, Counter>,
    pub audit_write_seconds: Histogram,
    pub audit_write_failures: Counter,
    /// The last audit write failed (for `/readyz`).
    audit_failing: AtomicBool,
    http_requests: Family<HttpLabels, Counter>,
    http_request_seconds: Family<[(&'static str, String); 1], Histogram>,
    database_connections: Family<StaticLabels<1>, Gauge>,
    pub nats_connected: Gauge,
    pub nats_bridge_queue: Gauge,
    pub certificate_expiry: Gauge,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// Which way bytes crossed the device leg.
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    ToDevice,
    FromDevice,
}

impl Metrics {
    fn new() -> Metrics {
        let (mut registry, mut nats_registry) =
            (Registry::with_prefix("tether"), Registry::with_prefix("tether"));
        let metrics = Metrics {
            registry: Registry::default(),
            nats_registry: Registry::default(),
            devices_connected: Gauge::default(),
            devices_pending: Gauge::default(),
            sessions_active: Family::default(),
            relay_bytes: Family::default(),
            auth_failures: Family::default(),
            audit_write_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            audit_write_failures: Counter::default(),
            audit_failing: AtomicBool::new(false),
            http_requests: Family::default(),
            http_request_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 14))
            }),
            database_connections: Family::default(),
            nats_connected: Gauge::default(),
            nats_bridge_queue: Gauge::default(),
            certificate_expiry: Gauge::default(),
        };
        registry.register(
            "devices_connected",
            "Devices whose leg is connected to this replica",
            metrics.devices_connected.clone(),
        );
        registry.register(
            "devices_pending",
            "Devices waiting for acceptance (fleet-wide)",
            metrics.devices_pending.clone(),
        );
        registry.register(
            "sessions_active",
            "Sessions open on this replica, by kind (terminal, exec, file, forward)",
            metrics.sessions_active.clone(),
        );
        registry.register(
            "relay_bytes",
            "Frame bytes relayed on the device leg, by direction and protocol",
            metrics.relay_bytes.clone(),
        );
        registry.register(
            "auth_failures",
            "Refused authentications, by kind (password, second_factor, token, device)",
            metrics.auth_failures.clone(),
        );
        registry.register(
            "audit_write_seconds",
            "Time to write one audit event",
            metrics.audit_write_seconds.clone(),
        );
        registry.register(
            "audit_write_failures",
            "Audit events that could not be written (their actions were refused)",
            metrics.audit_write_failures.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            metrics.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (a WebSocket: until the upgrade), by route",
            metrics.http_request_seconds.clone(),
        );
        registry.register(
            "database_connections",
            "Connections of the database pool, by state (idle, in_use)",
            metrics.database_connections.clone(),
        );
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When the hub's TLS certificate (the first of its chain) expires, Unix seconds",
            metrics.certificate_expiry.clone(),
        );
        nats_registry.register(
            "nats_connected",
            "1 while the NATS connection is up, 0 while it is down",
            metrics.nats_connected.clone(),
        );
        nats_registry.register(
            "nats_bridge_queue",
            "Messages waiting to be published to NATS",
            metrics.nats_bridge_queue.clone(),
        );
        // Each family starts with every label value at 0, so that a rate has a start.
        for kind in SESSION_KINDS {
            let _ = metrics.sessions_active.get_or_create(&[("kind", kind)]);
        }
        for kind in ["password", "second_factor", "token", "device"] {
            let _ = metrics.auth_failures.get_or_create(&[("kind", kind)]);
        }
        for direction in [Direction::ToDevice, Direction::FromDevice] {
            for protocol in PROTOCOLS {
                let _ = metrics
                    .relay_bytes
                    .get_or_create(&[("direction", direction.label()), ("protocol", protocol)]);
            }
        }
        Metrics {
            registry,
            nats_registry,
            ..metrics
        }
    }

    /// The Prometheus text exposition of every metric; the NATS ones only `with_nats`.
    pub fn encode(&self, with_nats: bool) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode_registry(&mut text, &self.registry);
        if with_nats {
            let _ = encode_registry(&mut text, &self.nats_registry);
        }
        let _ = encode_eof(&mut text);
        text
    }

    /// Counts a session of `kind` (one of [`SESSION_KINDS`]) as active while the guard lives.
    pub fn session(&self, kind: &'static str) -> Held {
        Held::new(self.sessions_active.get_or_create_owned(&[("kind", kind)]))
    }

    /// Counts a device as connected while the guard lives.
    pub fn device_connected(&self) -> Held {
        Held::new(self.devices_connected.clone())
    }

    /// Counts `bytes` of a frame of protocol `proto` (the envelope's number) on the device leg.
    pub fn relayed(&self, direction: Direction, proto: u16, bytes: usize) {
        let protocol = match proto {
            tether_proto::protocol::CONTROL => "control",
            tether_proto::protocol::SHELL => "shell",
            tether_proto::protocol::FILE_TRANSFER => "file_transfer",
            tether_proto::protocol::PORT_FORWARD => "port_forward",
            _ => "other",
        };
        self.relay_bytes
            .get_or_create(&[("direction", direction.label()), ("protocol", protocol)])
            .inc_by(bytes as u64);
    }

    /// Counts a refused authentication of `kind` (password, second_factor, token, device).
    pub fn auth_failed(&self, kind: &'static str) {
        self.auth_failures.get_or_create(&[("kind", kind)]).inc();
    }

    /// Records one audit write: its duration, and whether it failed.
    pub fn audit_written(&self, seconds: f64, ok: bool) {
        self.audit_write_seconds.observe(seconds);
        self.audit_failing.store(!ok, Ordering::Relaxed);
        if !ok {
            self.audit_write_failures.inc();
        }
    }

    /// Whether the last audit write failed.
    pub fn audit_failing(&self) -> bool {
        self.audit_failing.load(Ordering::Relaxed)
    }

    /// Counts one answered HTTP request on `route` (the route's pattern, not the path, so that
    /// ids do not make a label each).
    pub fn http_answered(&self, route: &str, status: u16, seconds: f64) {
        self.http_requests
            .get_or_create(&[("route", route.to_owned()), ("status", status.to_string())])
            .inc();
        self.http_request_seconds
            .get_or_create(&[("route", route.to_owned())])
            .observe(seconds);
    }

    /// Sets the pool's figures (at a scrape).
    pub fn database_pool(&self, size: u32, idle: usize) {
        let idle = idle as i64;
        self.database_connections
            .get_or_create(&[("state", "idle")])
            .set(idle);
        self.database_connections
            .get_or_create(&[("state", "in_use")])
            .set(i64::from(size) - idle);
    }
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::ToDevice => "to_device",
            Direction::FromDevice => "from_device",
        }
    }
}

/// Something counted in a gauge while it lives (a session, a connected device).
pub struct Held(Gauge);

impl Held {
    fn new(gauge: Gauge) -> Held {
        gauge.inc();
        Held(gauge)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}
