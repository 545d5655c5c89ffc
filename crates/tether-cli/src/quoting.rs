//! POSIX shell quoting for `tether exec`: the device runs the command string with `sh -c`, so
//! the argv words the operator typed must reach it as the same words.

/// Joins `words` into one shell command line. A single word is passed as-is, so that
/// `tether exec D -- 'echo a | wc -c'` runs a pipeline, as with ssh.
pub fn command_line(words: &[String]) -> String {
    match words {
        [single] => single.clone(),
        _ => words.iter().map(|word| quote(word)).collect::<Vec<_>>().join(" "),
    }
}

/// Quotes one word: unchanged when it holds only characters no shell treats specially,
/// otherwise single-quoted, with each `'` written as `'\''`.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn plain_words_stay_unquoted() {
        assert_eq!(
            command_line(&words(&["ls", "-l", "/tmp/a.b", "x=1"])),
            "ls -l /tmp/a.b x=1"
        );
    }

    #[test]
    fn special_words_are_single_quoted() {
        assert_eq!(
            command_line(&words(&["sh", "-c", "echo $HOME"])),
            "sh -c 'echo $HOME'"
        );
        assert_eq!(command_line(&words(&["echo", ""])), "echo ''");
        assert_eq!(command_line(&words(&["echo", "a b", "*"])), "echo 'a b' '*'");
    }

    #[test]
    fn single_quotes_are_escaped() {
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(
            command_line(&words(&["printf", "%s\n", "'"])),
            "printf '%s\n' ''\\'''"
        );
    }

    #[test]
    fn a_single_argument_is_passed_as_is() {
        assert_eq!(command_line(&words(&["echo a | wc -c"])), "echo a | wc -c");
    }
}
