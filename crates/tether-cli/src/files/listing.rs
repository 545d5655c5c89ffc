//! `ls -l`-style rendering of a `file_info`: the mode string and a UTC time.

use tether_proto::file_transfer::{FileInfo, go_mode};

pub fn is_dir(info: &FileInfo) -> bool {
    info.mode & go_mode::DIRECTORY != 0
}

/// A plain file: what `get_file` can copy.
pub fn is_regular(info: &FileInfo) -> bool {
    go_mode::is_regular(info.mode)
}

/// `file`, `directory`, `symlink`, `fifo`, `socket`, `char device`, `block device`, `other`.
pub fn kind(info: &FileInfo) -> &'static str {
    go_mode::kind(info.mode)
}

/// `drwxr-xr-x`, `-rwsr-xr-x`, `lrwxrwxrwx`... from a Go mode.
pub fn mode_string(mode: u32) -> String {
    let kind = match go_mode::kind(mode) {
        "directory" => 'd',
        "symlink" => 'l',
        "char device" => 'c',
        "block device" => 'b',
        "fifo" => 'p',
        "socket" => 's',
        "file" => '-',
        _ => '?',
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
        assert_eq!(kind(&info(go_mode::NAMED_PIPE | 0o600)), "fifo");
        assert_eq!(mode_string(go_mode::from_unix(0o010600)), "prw-------");
        assert_eq!(mode_string(go_mode::from_unix(0o020666)), "crw-rw-rw-");
    }
}
