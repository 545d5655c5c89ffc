//! What the agent reports of its device (the control `inventory`, see `tether_proto::inventory`):
//! read from `/etc/os-release`, `uname`, the interface list and `/proc/stat`, at each connection
//! and again every [`RECHECK`]; sent only when it changed, since it rides metered links.

use std::{ffi::CStr, time::Duration};

use tether_proto::inventory::Inventory;

/// How often the inventory is read again while connected (cheap: a few small reads).
pub const RECHECK: Duration = Duration::from_secs(300);
/// A boot time that moved by less than this is the same boot: `/proc/stat`'s `btime` is derived
/// from the wall clock and shifts when it is adjusted.
const BOOT_TIME_SLACK: i64 = 60;

/// Reads the device's inventory now; `features` and `versions` come from the agent's settings.
pub fn collect(features: Vec<String>, versions: Vec<u32>) -> Inventory {
    let (os_name, os_version) = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .map(|text| os_release(&text))
        .unwrap_or_default();
    let names = uname();
    Inventory {
        os_name,
        os_version,
        kernel: names.as_ref().map(|n| n.release.clone()),
        architecture: names.as_ref().map(|n| n.machine.clone()),
        hostname: names.map(|n| n.nodename).filter(|name| !name.is_empty()),
        addresses: addresses(),
        boot_time: std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| boot_time(&text)),
        agent_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        features,
        versions,
    }
}

/// Whether `current` must be sent to a hub that got `previous`: something changed beyond the
/// boot time's jitter. `current` keeps the boot time already sent when it merely jittered.
pub fn changed(previous: &Inventory, current: &mut Inventory) -> bool {
    if let (Some(before), Some(now)) = (previous.boot_time, current.boot_time)
        && (before - now).abs() < BOOT_TIME_SLACK
    {
        current.boot_time = Some(before);
    }
    previous != current
}

/// `NAME` and `VERSION_ID` (else `VERSION`) of an os-release file.
fn os_release(text: &str) -> (Option<String>, Option<String>) {
    let value = |key: &str| {
        text.lines().find_map(|line| {
            let rest = line.trim().strip_prefix(key)?.strip_prefix('=')?;
            let unquoted = rest.trim().trim_matches(|c| c == '"' || c == '\'');
            (!unquoted.is_empty()).then(|| unquoted.to_owned())
        })
    };
    (value("NAME"), value("VERSION_ID").or_else(|| value("VERSION")))
}

/// The `btime` line of `/proc/stat`: boot time, Unix seconds.
fn boot_time(text: &str) -> Option<i64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

struct Names {
    nodename: String,
    release: String,
    machine: String,
}

fn uname() -> Option<Names> {
    // SAFETY: `utsname` is plain bytes; `uname` fills it with NUL-terminated strings.
    let mut names: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut names) } != 0 {
        return None;
    }
    let text = |field: &[libc::c_char]| {
        // SAFETY: the kernel NUL-terminates every field within its array.
        unsafe { CStr::from_ptr(field.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    Some(Names {
        nodename: text(&names.nodename),
        release: text(&names.release),
        machine: text(&names.machine),
    })
}

/// The non-loopback IPv4 and IPv6 addresses, `interface address/prefix`, sorted.
fn addresses() -> Vec<String> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: on success `list` is a linked list the kernel allocated, freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Vec::new();
    }
    let mut found = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list, valid until `freeifaddrs`.
        let node = unsafe { &*entry };
        entry = node.ifa_next;
        if node.ifa_addr.is_null() || node.ifa_flags & libc::IFF_LOOPBACK as u32 != 0 {
            continue;
        }
        // SAFETY: `ifa_name` is a NUL-terminated string; the addresses are read per family.
        let name = unsafe { CStr::from_ptr(node.ifa_name) }.to_string_lossy();
        let (address, prefix) = unsafe {
            match i32::from((*node.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let address = &*node.ifa_addr.cast::<libc::sockaddr_in>();
                    let ip = std::net::Ipv4Addr::from(u32::from_be(address.sin_addr.s_addr));
                    let prefix = (!node.ifa_netmask.is_null()).then(|| {
                        u32::from_be((*node.ifa_netmask.cast::<libc::sockaddr_in>()).sin_addr.s_addr)
                            .count_ones()
                    });
                    (ip.to_string(), prefix)
                }
                libc::AF_INET6 => {
                    let address = &*node.ifa_addr.cast::<libc::sockaddr_in6>();
                    let ip = std::net::Ipv6Addr::from(address.sin6_addr.s6_addr);
                    let prefix = (!node.ifa_netmask.is_null()).then(|| {
                        (*node.ifa_netmask.cast::<libc::sockaddr_in6>())
                            .sin6_addr
                            .s6_addr
                            .iter()
                            .map(|byte| byte.count_ones())
                            .sum()
                    });
                    (ip.to_string(), prefix)
                }
                _ => continue,
            }
        };
        found.push(match prefix {
            Some(prefix) => format!("{name} {address}/{prefix}"),
            None => format!("{name} {address}"),
        });
    }
    // SAFETY: `list` came from `getifaddrs` and is freed once.
    unsafe { libc::freeifaddrs(list) };
    found.sort();
    found.dedup();
    found.truncate(tether_proto::inventory::MAX_LIST);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_gives_name_and_version() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
                      VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nID=debian\n";
        assert_eq!(
            os_release(debian),
            (Some("Debian GNU/Linux".into()), Some("12".into()))
        );
        let rolling = "NAME=Arch Linux\nBUILD_ID=rolling\n";
        assert_eq!(os_release(rolling), (Some("Arch Linux".into()), None));
        assert_eq!(os_release(""), (None, None));
    }

    #[test]
    fn boot_time_is_read_from_proc_stat() {
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1764800000\nprocesses 9\n"),
            Some(1_764_800_000)
        );
        assert_eq!(boot_time("cpu 1\n"), None);
    }

    #[test]
    fn this_machine_has_an_inventory_and_jitter_is_no_change() {
        let first = collect(vec!["terminal".into()], vec![1, 2, 3]);
        assert!(first.kernel.is_some() && first.architecture.is_some());
        assert!(first.boot_time.is_some_and(|boot| boot > 0));
        let mut again = first.clone();
        again.boot_time = first.boot_time.map(|boot| boot + 1);
        assert!(!changed(&first, &mut again));
        assert_eq!(again.boot_time, first.boot_time);
        again.addresses.push("eth9 10.9.9.9/8".into());
        assert!(changed(&first, &mut again));
    }
}
