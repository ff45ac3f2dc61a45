//! HTTP-date (RFC 9110 §5.6.7): the preferred IMF-fixdate and the two
//! obsolete forms a recipient must accept, read as Unix milliseconds.

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The time in `text`, or `None` if it is no HTTP-date (an invalid `Expires`
/// means "already expired" to the caller, RFC 9111 §5.3).
///
/// ```
/// use swre_core::http::parse_http_date;
///
/// let t = Some(784_111_777_000);
/// assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), t);
/// assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), t);
/// assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), t);
/// assert_eq!(parse_http_date("0"), None);
/// ```
pub fn parse_http_date(text: &str) -> Option<u64> {
    let text = text.trim_matches([' ', '\t']);
    imf_fixdate(text)
        .or_else(|| rfc850(text))
        .or_else(|| asctime(text))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn imf_fixdate(s: &str) -> Option<u64> {
    let (_, rest) = s.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day = number(parts.next()?, 2)?;
    let month = month(parts.next()?)?;
    let year = number(parts.next()?, 4)?;
    let time = time(parts.next()?)?;
    (parts.next()? == "GMT" && parts.next().is_none()).then_some(())?;
    at(year, month, day, time)
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`: a two-digit year more than 50 years
/// in the future is in the past century (RFC 9110 §5.6.7); without a clock,
/// years 70–99 are 19xx and 00–69 are 20xx.
fn rfc850(s: &str) -> Option<u64> {
    let (_, rest) = s.split_once(", ")?;
    let mut parts = rest.split(' ');
    let mut date = parts.next()?.split('-');
    let day = number(date.next()?, 2)?;
    let month = month(date.next()?)?;
    let yy = number(date.next()?, 2)?;
    date.next().is_none().then_some(())?;
    let year = if yy >= 70 { 1900 + yy } else { 2000 + yy };
    let time = time(parts.next()?)?;
    (parts.next()? == "GMT" && parts.next().is_none()).then_some(())?;
    at(year, month, day, time)
}

/// `Sun Nov  6 08:49:37 1994`
fn asctime(s: &str) -> Option<u64> {
    let mut parts = s.split(' ').filter(|p| !p.is_empty());
    let _weekday = parts.next()?;
    let month = month(parts.next()?)?;
    let day_text = parts.next()?;
    let day = match day_text.len() {
        1 | 2 => number_any(day_text)?,
        _ => return None,
    };
    let time = time(parts.next()?)?;
    let year = number(parts.next()?, 4)?;
    parts.next().is_none().then_some(())?;
    at(year, month, day, time)
}

fn month(m: &str) -> Option<u64> {
    MONTHS.iter().position(|&n| n == m).map(|i| i as u64 + 1)
}

/// Exactly `digits` ASCII digits.
fn number(s: &str, digits: usize) -> Option<u64> {
    (s.len() == digits).then_some(())?;
    number_any(s)
}

fn number_any(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `HH:MM:SS` as seconds into the day.
fn time(s: &str) -> Option<u64> {
    let mut hms = s.split(':');
    let h = number(hms.next()?, 2)?;
    let m = number(hms.next()?, 2)?;
    let sec = number(hms.next()?, 2)?;
    hms.next().is_none().then_some(())?;
    // A leap second (60) is allowed by the grammar.
    (h < 24 && m < 60 && sec <= 60).then_some(h * 3_600 + m * 60 + sec)
}

/// Unix milliseconds of the civil date and time (proleptic Gregorian), or
/// `None` for a day that does not exist or a time before 1970.
fn at(year: u64, month: u64, day: u64, seconds: u64) -> Option<u64> {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let days_in = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let max = *days_in.get(usize::try_from(month).ok()?.checked_sub(1)?)?;
    if !(1..=max).contains(&day) || year < 1970 {
        return None;
    }
    // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year } as i64;
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days)
        .ok()?
        .checked_mul(86_400)?
        .checked_add(seconds)?;
    secs.checked_mul(1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms_and_edges() {
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 23:59:59 GMT"),
            Some(951_868_799_000)
        );
        assert_eq!(parse_http_date("Wed, 29 Feb 2001 00:00:00 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 UTC"), None);
        assert_eq!(parse_http_date("Sun, 6 Nov 1994 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 24:00:00 GMT"), None);
        assert_eq!(
            parse_http_date("Friday, 01-Jan-21 00:00:00 GMT"),
            parse_http_date("Fri, 01 Jan 2021 00:00:00 GMT")
        );
        assert_eq!(
            parse_http_date("Sun Nov 16 08:49:37 1994"),
            parse_http_date("Wed, 16 Nov 1994 08:49:37 GMT")
        );
        for junk in [
            "",
            "-1",
            "Sun, 06 Nov 1994",
            "Sun, 06 Nov 99999 08:49:37 GMT",
            "é, 06 Nov 1994 08:49:37 GMT x",
        ] {
            assert_eq!(parse_http_date(junk), None, "{junk:?}");
        }
    }
}
