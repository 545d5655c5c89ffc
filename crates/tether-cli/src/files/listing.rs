//! `ls -l`-style rendering of a `file_info`: the mode string and a UTC time.

use tether_proto::file_transfer::{FileInfo, go_mode};

/// Go's other file type bits (`os.ModeDevice`, `ModeNamedPipe`, `ModeSocket`, `ModeCharDevice`,
/// `ModeIrregular`).
const DEVICE: u32 = 1 << 26;
const NAMED_PIPE: u32 = 1 << 25;
const SOCKET: u32 = 1 << 24;
const CHAR_DEVICE: u32 = 1 << 21;
const IRREGULAR: u32 = 1 << 19;

pub fn is_dir(info: &FileInfo) -> bool {
    info.mode & go_mode::DIRECTORY != 0
}

/// A plain file: what `get_file` can copy.
pub fn is_regular(info: &FileInfo) -> bool {
    info.mode
        & (go_mode::DIRECTORY | go_mode::SYMLINK | DEVICE | NAMED_PIPE | SOCKET | CHAR_DEVICE | IRREGULAR)
        == 0
}

pub fn kind(info: &FileInfo) -> &'static str {
    if is_dir(info) {
        "directory"
    } else if info.mode & go_mode::SYMLINK != 0 {
        "symlink"
    } else if is_regular(info) {
        "file"
    } else {
        "other"
    }
}

/// `drwxr-xr-x`, `-rwsr-xr-x`, `lrwxrwxrwx`... from a Go mode.
pub fn mode_string(mode: u32) -> String {
    let kind = if mode & go_mode::DIRECTORY != 0 {
        'd'
    } else if mode & go_mode::SYMLINK != 0 {
        'l'
    } else if mode & CHAR_DEVICE != 0 {
        'c'
    } else if mode & DEVICE != 0 {
        'b'
    } else if mode & NAMED_PIPE != 0 {
        'p'
    } else if mode & SOCKET != 0 {
        's'
    } else {
        '-'
    };
    let mut text = String::with_capacity(10);
    text.push(kind);
    let special = [
        (mode & go_mode::SETUID != 0, 's'),
        (mode & go_mode::SETGID != 0, 's'),
        (mode & go_mode::STICKY != 0, 't'),
    ];
    for (i, (set, letter)) in special.into_iter().enumerate() {
        let bits = (mode >> (6 - 3 * i)) & 0o7;
        text.push(if bits & 4 != 0 { 'r' } else { '-' });
        text.push(if bits & 2 != 0 { 'w' } else { '-' });
        text.push(match (bits & 1 != 0, set) {
            (true, true) => letter,
            (false, true) => letter.to_ascii_uppercase(),
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    text
}

/// `YYYY-MM-DD HH:MM` in UTC.
pub fn utc_minute(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        of_day / 3600,
        of_day % 3600 / 60
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_render_like_ls() {
        assert_eq!(mode_string(0o644), "-rw-r--r--");
        assert_eq!(mode_string(go_mode::DIRECTORY | 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(go_mode::SYMLINK | 0o777), "lrwxrwxrwx");
        assert_eq!(mode_string(go_mode::SETUID | 0o755), "-rwsr-xr-x");
        assert_eq!(mode_string(go_mode::SETGID | 0o640), "-rw-r-S---");
        assert_eq!(
            mode_string(go_mode::DIRECTORY | go_mode::STICKY | 0o777),
            "drwxrwxrwt"
        );
        assert_eq!(mode_string(0), "----------");
        assert_eq!(mode_string(go_mode::from_unix(0o100600)), "-rw-------");
    }

    #[test]
    fn file_kinds() {
        let info = |mode| FileInfo {
            mode,
            ..Default::default()
        };
        assert!(is_regular(&info(0o644)));
        assert!(!is_regular(&info(go_mode::SYMLINK | 0o777)));
        assert!(is_dir(&info(go_mode::DIRECTORY | 0o755)));
        assert_eq!(kind(&info(NAMED_PIPE | 0o600)), "other");
    }

    #[test]
    fn times_are_utc_minutes() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00");
        assert_eq!(utc_minute(1_700_000_000), "2023-11-14 22:13");
        assert_eq!(utc_minute(951_825_600), "2000-02-29 12:00");
        assert_eq!(utc_minute(-60), "1969-12-31 23:59");
    }
}
