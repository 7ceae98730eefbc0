//! Calendar criteria: `day_of_week`, `time_of_day` and `date`.
//!
//! Time zones are limited to UTC and fixed offsets (`+02:00`, `UTC-7`):
//! named zones such as `America/Phoenix` need a time zone database, which
//! this module does not carry, so they are rejected at compile time rather
//! than silently evaluated in the wrong zone.

use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Why a day list, time of day, time zone or date does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ScheduleError {
    /// A day name that is not one.
    #[error("unknown day {0:?} (expected a day such as \"mon\" or \"monday\")")]
    UnknownDay(String),
    /// An empty day list.
    #[error("empty day of week (expected e.g. \"mon-fri\" or \"*\")")]
    NoDays,
    /// An empty item in a day list.
    #[error("empty item in day list {0:?}")]
    EmptyDayItem(String),
    /// A time of day in no known layout.
    #[error("invalid time {0:?} (expected e.g. \"9:00\", \"17:30:00\", \"5:30PM\" or \"5 PM\")")]
    Time(String),
    /// A named time zone, or an offset in no known layout.
    #[error(
        "unsupported time zone {0:?}: only \"UTC\" and fixed offsets such as \"+02:00\" or \
         \"UTC-7\" are supported (named zones need a time zone database)"
    )]
    TimeZone(String),
    /// An offset beyond ±23:59.
    #[error("time zone offset {0:?} is out of range")]
    OffsetRange(String),
    /// A date in no ISO-8601 layout.
    #[error(
        "invalid date {0:?} (expected ISO-8601 such as \"2030-01-02T16:20:00Z\", \
         \"2030-01-02T16:20:00\" or \"2030-01-02\")"
    )]
    Date(String),
}

const NANOS_PER_SECOND: u64 = 1_000_000_000;
const NANOS_PER_DAY: u64 = 86_400 * NANOS_PER_SECOND;

/// Days of the week, bit `n` = `n` days from Sunday.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DayOfWeek {
    pub(crate) days: u8,
    pub(crate) offset: UtcOffset,
}

impl DayOfWeek {
    pub(crate) fn matches(&self, now: OffsetDateTime) -> bool {
        let Some(local) = now.checked_to_offset(self.offset) else {
            return false;
        };
        self.days & (1 << local.weekday().number_days_from_sunday()) != 0
    }
}

/// A daily window in local time; `after` is inclusive, `before` exclusive.
/// When `after` is later than `before` the window spans midnight.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TimeOfDay {
    pub(crate) offset: UtcOffset,
    pub(crate) after: Option<u64>,
    pub(crate) before: Option<u64>,
}

impl TimeOfDay {
    pub(crate) fn matches(&self, now: OffsetDateTime) -> bool {
        let Some(local) = now.checked_to_offset(self.offset) else {
            return false;
        };
        let t = nanos_of_day(local.time());
        match (self.after, self.before) {
            (Some(a), Some(b)) if a <= b => a <= t && t < b,
            (Some(a), Some(b)) => t >= a || t < b,
            (Some(a), None) => t >= a,
            (None, Some(b)) => t < b,
            (None, None) => true,
        }
    }
}

/// An absolute window; `after` is inclusive, `before` exclusive.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DateWindow {
    pub(crate) after: Option<OffsetDateTime>,
    pub(crate) before: Option<OffsetDateTime>,
}

impl DateWindow {
    pub(crate) fn matches(&self, now: OffsetDateTime) -> bool {
        self.after.is_none_or(|a| now >= a) && self.before.is_none_or(|b| now < b)
    }
}

fn nanos_of_day(t: Time) -> u64 {
    let (h, m, s, n) = t.as_hms_nano();
    (u64::from(h) * 3600 + u64::from(m) * 60 + u64::from(s)) * NANOS_PER_SECOND + u64::from(n)
}

const DAY_NAMES: [(&str, &str); 7] = [
    ("sun", "sunday"),
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
];

fn parse_day(s: &str) -> Result<u8, ScheduleError> {
    let lower = s.trim().to_ascii_lowercase();
    for (i, (short, long)) in DAY_NAMES.iter().enumerate() {
        if lower == *short || lower == *long {
            // i < 7, so the cast cannot truncate.
            return Ok(i as u8);
        }
    }
    Err(ScheduleError::UnknownDay(s.trim().to_string()))
}

/// Parses `*`, `mon,wed,fri`, `mon-fri`, `fri-mon` (wraps), or mixtures such
/// as `mon-wed,fri`; names are English, full or three letters, any case.
pub(crate) fn parse_days(spec: &str) -> Result<u8, ScheduleError> {
    let spec = spec.trim();
    if spec == "*" {
        return Ok(0x7f);
    }
    if spec.is_empty() {
        return Err(ScheduleError::NoDays);
    }
    let mut days = 0u8;
    for part in spec.split(',') {
        if part.trim().is_empty() {
            return Err(ScheduleError::EmptyDayItem(spec.to_string()));
        }
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse_day(a)?, parse_day(b)?);
                let mut d = a;
                loop {
                    days |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days |= 1 << parse_day(part)?,
        }
    }
    Ok(days)
}

/// Parses a time of day in one of the documented layouts: `3:04 PM`,
/// `3:04PM`, `3 PM`, `3PM`, `15:04:05.999999999`, `15:04:05`, `15:04`
/// (AM/PM in any case). Returns nanoseconds since midnight.
pub(crate) fn parse_time(s: &str) -> Result<u64, ScheduleError> {
    let err = || ScheduleError::Time(s.to_string());
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let (clock, meridiem) = if let Some(r) = lower.strip_suffix("am") {
        (r.trim_end(), Some(false))
    } else if let Some(r) = lower.strip_suffix("pm") {
        (r.trim_end(), Some(true))
    } else {
        (lower.as_str(), None)
    };
    let mut parts = clock.split(':');
    let num = |p: Option<&str>, max: u64| -> Result<Option<u64>, ScheduleError> {
        match p {
            None => Ok(None),
            Some(p) if !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit()) => {
                let v: u64 = p.parse().map_err(|_| err())?;
                if v > max { Err(err()) } else { Ok(Some(v)) }
            }
            Some(_) => Err(err()),
        }
    };
    let hour = num(parts.next(), 23)?.ok_or_else(err)?;
    let minute = num(parts.next(), 59)?;
    let (second, nanos) = match parts.next() {
        None => (None, 0),
        Some(sec) => {
            let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
            let second = num(Some(whole), 59)?;
            let nanos = if sec.contains('.') {
                if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err());
                }
                let padded = format!("{frac:0<9}");
                padded.parse::<u64>().map_err(|_| err())?
            } else {
                0
            };
            (second, nanos)
        }
    };
    if parts.next().is_some() {
        return Err(err());
    }
    let hour = match meridiem {
        None => {
            // 24-hour layouts always carry minutes.
            if minute.is_none() {
                return Err(err());
            }
            hour
        }
        Some(pm) => {
            if !(1..=12).contains(&hour) || second.is_some() {
                return Err(err());
            }
            match (hour, pm) {
                (12, false) => 0,
                (12, true) => 12,
                (h, false) => h,
                (h, true) => h + 12,
            }
        }
    };
    let secs = hour * 3600 + minute.unwrap_or(0) * 60 + second.unwrap_or(0);
    let total = secs * NANOS_PER_SECOND + nanos;
    debug_assert!(total < NANOS_PER_DAY);
    Ok(total)
}

/// Parses `UTC`, `GMT`, `Z`, `Etc/UTC`, or a fixed offset: `+02:00`,
/// `-0700`, `+5`, `UTC+2`, `UTC-07:30`.
pub(crate) fn parse_tz(s: &str) -> Result<UtcOffset, ScheduleError> {
    let t = s.trim();
    let upper = t.to_ascii_uppercase();
    if matches!(
        upper.as_str(),
        "UTC" | "GMT" | "Z" | "ETC/UTC" | "ETC/GMT" | "UCT"
    ) {
        return Ok(UtcOffset::UTC);
    }
    let rest = upper
        .strip_prefix("UTC")
        .or_else(|| upper.strip_prefix("GMT"))
        .unwrap_or(&upper);
    let unsupported = || ScheduleError::TimeZone(t.to_string());
    let (sign, digits) = match rest.as_bytes().first() {
        Some(b'+') => (1i32, &rest[1..]),
        Some(b'-') => (-1i32, &rest[1..]),
        _ => return Err(unsupported()),
    };
    let (h, m) = match digits.split_once(':') {
        Some((h, m)) => (h, m),
        None if digits.len() == 4 && digits.is_ascii() => digits.split_at(2),
        None => (digits, "0"),
    };
    let valid = |p: &str| !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit());
    if !valid(h) || !valid(m) {
        return Err(unsupported());
    }
    let (h, m): (i32, i32) = (
        h.parse().map_err(|_| unsupported())?,
        m.parse().map_err(|_| unsupported())?,
    );
    if h > 23 || m > 59 {
        return Err(ScheduleError::OffsetRange(t.to_string()));
    }
    UtcOffset::from_whole_seconds(sign * (h * 3600 + m * 60))
        .map_err(|_| ScheduleError::OffsetRange(t.to_string()))
}

/// Parses an ISO-8601 date-time: RFC 3339 with an offset, or a date-time
/// without one (read as UTC), or a bare date (midnight UTC).
pub(crate) fn parse_datetime(s: &str) -> Result<OffsetDateTime, ScheduleError> {
    let t = s.trim();
    if let Ok(v) = OffsetDateTime::parse(t, &Rfc3339) {
        return Ok(v);
    }
    let err = || ScheduleError::Date(t.to_string());
    let (date, time) = match t.split_once(['T', 't', ' ']) {
        Some((d, tm)) => (d, Some(tm)),
        None => (t, None),
    };
    let mut dp = date.split('-');
    let (Some(y), Some(mo), Some(d), None) = (dp.next(), dp.next(), dp.next(), dp.next()) else {
        return Err(err());
    };
    let y: i32 = y.parse().map_err(|_| err())?;
    let mo: u8 = mo.parse().map_err(|_| err())?;
    let d: u8 = d.parse().map_err(|_| err())?;
    let month = time::Month::try_from(mo).map_err(|_| err())?;
    let date = Date::from_calendar_date(y, month, d).map_err(|_| err())?;
    let time = match time {
        None => Time::MIDNIGHT,
        Some(tm) => {
            let nanos = parse_time(tm).map_err(|_| err())?;
            let secs = nanos / NANOS_PER_SECOND;
            // secs < 86_400, so every component fits.
            Time::from_hms_nano(
                (secs / 3600) as u8,
                ((secs / 60) % 60) as u8,
                (secs % 60) as u8,
                (nanos % NANOS_PER_SECOND) as u32,
            )
            .map_err(|_| err())?
        }
    };
    Ok(PrimitiveDateTime::new(date, time).assume_utc())
}
