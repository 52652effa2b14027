//! Calendar arithmetic in UTC: billing periods (calendar months) and the
//! 24 h day window. Times are Unix milliseconds (`i64`) so the pure logic
//! needs no clock and no time zone database.

use std::fmt;
use time::{Date, Month, OffsetDateTime, Time};

/// Milliseconds in the fixed day window.
pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// A calendar month in UTC: the budget period and the monthly window.
///
/// Its bounds are computed once, at construction, because the check path
/// asks "is `now` still in this month?" several times per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Period {
    year: i32,
    /// 1..=12
    month: u8,
    start_ms: i64,
    end_ms: i64,
}

impl Period {
    /// The month `year`-`month` (1..=12); None if out of range.
    pub fn new(year: i32, month: u8) -> Option<Period> {
        if !(1..=12).contains(&month) || !(1970..=9999).contains(&year) {
            return None;
        }
        let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
        Some(Period {
            year,
            month,
            start_ms: month_start_ms(year, month),
            end_ms: month_start_ms(next_year, next_month),
        })
    }

    /// The month containing `ms` (Unix milliseconds, UTC).
    pub fn containing(ms: i64) -> Period {
        let dt = datetime(ms);
        let fallback = Period {
            year: 1970,
            month: 1,
            start_ms: 0,
            end_ms: month_start_ms(1970, 2),
        };
        Period::new(dt.year(), u8::from(dt.month())).unwrap_or(fallback)
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> u8 {
        self.month
    }

    /// First millisecond of the month.
    pub fn start_ms(self) -> i64 {
        self.start_ms
    }

    /// First millisecond of the next month (exclusive end).
    pub fn end_ms(self) -> i64 {
        self.end_ms
    }

    /// Whether `ms` falls in this month.
    pub fn contains(self, ms: i64) -> bool {
        self.start_ms <= ms && ms < self.end_ms
    }

    /// The month containing `ms`, reusing `self` when it still does.
    pub fn at(self, ms: i64) -> Period {
        if self.contains(ms) {
            self
        } else {
            Period::containing(ms)
        }
    }

    pub fn next(self) -> Period {
        Period::containing(self.end_ms)
    }

    /// Parses the `YYYY-MM` form used in the database.
    pub fn parse(text: &str) -> Option<Period> {
        let (y, m) = text.split_once('-')?;
        Period::new(y.parse().ok()?, m.parse().ok()?)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

fn datetime(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn month_start_ms(year: i32, month: u8) -> i64 {
    let month = Month::try_from(month).unwrap_or(Month::January);
    let date = Date::from_calendar_date(year, month, 1).unwrap_or(Date::MIN);
    let ts = date.with_time(Time::MIDNIGHT).assume_utc().unix_timestamp_nanos();
    (ts / 1_000_000) as i64
}

/// RFC 3339 text for a Unix-millisecond instant (for `resets_at`), to the
/// second, in UTC: `2026-11-28T04:00:00Z`.
///
/// Written out by hand (Hinnant's days-to-civil algorithm) because it runs
/// several times for every check response; it is property-tested against
/// the `time` crate's formatter.
pub fn rfc3339(ms: i64) -> String {
    let mut out = Vec::with_capacity(20);
    write_rfc3339(&mut out, ms);
    String::from_utf8(out).unwrap_or_default()
}

/// [`rfc3339`], appended to a byte buffer (the check response writer).
pub fn write_rfc3339(out: &mut Vec<u8>, ms: i64) {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (sod / 3600, (sod / 60) % 60, sod % 60);
    if !(0..=9999).contains(&y) {
        let text = datetime(ms)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        out.extend_from_slice(text.as_bytes());
        return;
    }
    for (value, width, sep) in [
        (y, 4, b'-'),
        (m, 2, b'-'),
        (d, 2, b'T'),
        (hh, 2, b':'),
        (mm, 2, b':'),
        (ss, 2, b'Z'),
    ] {
        push_padded(out, value, width);
        out.push(sep);
    }
}

fn push_padded(out: &mut Vec<u8>, value: i64, width: u32) {
    let mut div = 10i64.pow(width - 1);
    while div > 0 {
        out.push(b'0' + ((value / div) % 10) as u8);
        div /= 10;
    }
}

/// (year, month, day) of a count of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn months_have_the_right_bounds() {
        // 2026-11-28T04:00:00Z
        let now = 1_795_838_400_000;
        let p = Period::containing(now);
        assert_eq!(p.to_string(), "2026-11");
        assert_eq!(rfc3339(p.start_ms()), "2026-11-01T00:00:00Z");
        assert_eq!(rfc3339(p.end_ms()), "2026-12-01T00:00:00Z");
        assert_eq!(Period::parse("2026-12").unwrap().next().to_string(), "2027-01");
        assert_eq!(Period::parse("2026-13"), None);
    }

    proptest! {
        #[test]
        fn rfc3339_matches_the_time_crate(ms in 0i64..253_402_300_799_000) {
            let expected = datetime(ms - ms.rem_euclid(1000))
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            prop_assert_eq!(rfc3339(ms), expected);
        }

        #[test]
        fn every_instant_is_inside_its_period(ms in 0i64..4_102_444_800_000) {
            let p = Period::containing(ms);
            prop_assert!(p.start_ms() <= ms && ms < p.end_ms());
            prop_assert_eq!(Period::containing(p.end_ms()), p.next());
            prop_assert_eq!(Period::parse(&p.to_string()), Some(p));
        }
    }
}
