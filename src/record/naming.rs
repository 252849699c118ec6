//! Recording file names: the stream's public name (a user's name or the stream
//! id, never the key), the broadcast's start in UTC and the file's number within
//! the broadcast, so the files of one broadcast sort together and in order.
//!
//! `{dir}/{app}/{name}-{YYYYMMDD}T{HHMMSS}Z-{NNNN}.{ext}`

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The path of file number `index` (from 1) of a broadcast of `name` in `app`
/// that started at `started`. `app` and `name` are made safe for a file name
/// (anything but ASCII letters, digits, `-`, `_` and `.` becomes `_`; no leading
/// dot), so no name can leave `dir`.
pub fn file_path(
    dir: &Path,
    app: &str,
    name: &str,
    started: SystemTime,
    index: u32,
    extension: &str,
) -> PathBuf {
    dir.join(safe(app)).join(format!(
        "{}-{}-{index:04}.{extension}",
        safe(name),
        utc_stamp(started)
    ))
}

/// `name` as one safe path component.
pub fn safe(name: &str) -> String {
    let mut out: String = name
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with('.') {
        out.insert(0, '_');
    }
    out
}

/// `YYYYMMDDTHHMMSSZ` of `time` (UTC), from the civil-from-days algorithm
/// (Howard Hinnant's), so no calendar crate is needed for one format.
pub fn utc_stamp(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{hour:02}{minute:02}{second:02}Z")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn utc_stamps_match_known_dates() {
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(utc_stamp(at(0)), "19700101T000000Z");
        assert_eq!(utc_stamp(at(951_782_400)), "20000229T000000Z");
        assert_eq!(utc_stamp(at(1_796_616_245)), "20261207T040405Z");
        assert_eq!(utc_stamp(at(4_102_444_799)), "20991231T235959Z");
    }

    #[test]
    fn names_cannot_leave_the_directory() {
        let at = UNIX_EPOCH;
        let path = file_path(Path::new("/rec"), "../etc", "../../x y", at, 3, "flv");
        assert_eq!(
            path,
            Path::new("/rec/_.._etc/_.._.._x_y-19700101T000000Z-0003.flv")
        );
        assert_eq!(safe(""), "_");
        assert_eq!(safe(".hidden"), "_.hidden");
        assert!(path.starts_with("/rec"));
    }
}
