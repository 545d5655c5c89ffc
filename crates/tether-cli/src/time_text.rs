//! Time as the CLI reads and writes it: UTC dates (Howard Hinnant's civil-date algorithms, no
//! time-zone database), RFC 3339 times and durations such as `1h30m`.

use anyhow::{Context, Result, bail};

/// Days since 1970-01-01 to (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn utc_millis(millis: i64) -> String {
    let seconds = millis.div_euclid(1000);
    let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Unix seconds as `YYYY-MM-DD HH:MM` in UTC (file listings).
pub fn utc_minute(seconds: i64) -> String {
    let text = utc_millis(seconds.saturating_mul(1000));
    text[..text.len() - 3].to_owned()
}

/// "90s", "30m", "1h30m", "2d", "1w" as milliseconds.
pub fn parse_duration_millis(text: &str) -> Option<i64> {
    if text.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit: i64 = match c {
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            'w' => 7 * 86_400_000,
            _ => return None,
        };
        let value: i64 = number.parse().ok()?;
        total = total.checked_add(value.checked_mul(unit)?)?;
        number.clear();
    }
    number.is_empty().then_some(total)
}

/// `YYYY-MM-DD`, or `YYYY-MM-DD[T ]HH:MM:SS[.fff](Z|±HH:MM)`.
pub fn parse_rfc3339(text: &str) -> Result<i64> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Result<i64> {
        let part = text.get(range).context("too short")?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            bail!("not a number: {part}");
        }
        Ok(part.parse()?)
    };
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        bail!("expected YYYY-MM-DD");
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        bail!("no such date");
    }
    let days = days_from_civil(year, month, day);
    if bytes.len() == 10 {
        return Ok(days * 86_400_000);
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') || bytes.len() < 19 || bytes[13] != b':' || bytes[16] != b':'
    {
        bail!("expected HH:MM:SS after the date");
    }
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if hour > 23 || minute > 59 || second > 60 {
        bail!("no such time of day");
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            bail!("empty fraction of a second");
        }
        let padded: String = fraction[..digits].chars().chain("000".chars()).take(3).collect();
        millis = padded.parse::<i64>()?;
        rest = &fraction[digits..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(rest.as_bytes()[0], b'+' | b'-') && rest.as_bytes()[3] == b':' => {
            let hours: i64 = rest[1..3].parse()?;
            let minutes: i64 = rest[4..6].parse()?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (hours * 60 + minutes)
        }
        _ => bail!("expected a time zone (Z or ±HH:MM)"),
    };
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1000 + millis)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_format_in_utc() {
        assert_eq!(utc_millis(0), "1970-01-01 00:00:00");
        assert_eq!(utc_millis(1_714_564_800_999), "2024-05-01 12:00:00");
        assert_eq!(utc_millis(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc_minute(1_700_000_000), "2023-11-14 22:13");
        assert_eq!(utc_minute(-60), "1969-12-31 23:59");
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in [-1000, 0, 11_016, 19_844, 100_000] {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month as i64, day as i64), days);
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_millis("90s"), Some(90_000));
        assert_eq!(parse_duration_millis("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_millis("2d"), Some(172_800_000));
        assert_eq!(parse_duration_millis("5"), None, "a unit is required");
        assert_eq!(parse_duration_millis("1x"), None);
    }
}
