//! Request fields, checked before anything is read or written: each error
//! names its field.
use std::collections::HashMap;

use chrono::{Datelike as _, NaiveDate};

use super::smart_code;
use crate::error::{Error, Result};

pub const DEFAULT_BATCH: i32 = 1000;
pub const MAX_BATCH: i32 = 5000;

/// A UUID request field, named when missing or malformed.
pub fn id(field: &'static str, value: &str) -> Result<uuid::Uuid> {
    if value.trim().is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    uuid::Uuid::parse_str(value.trim())
        .map_err(|_| Error::invalid(field, format!("{value:?} is not a UUID")))
}

/// A `YYYY-MM-DD` date.
pub fn date(field: &'static str, value: &str) -> Result<NaiveDate> {
    if value.trim().is_empty() {
        return Err(Error::invalid(field, "is required (YYYY-MM-DD)"));
    }
    let date = NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d")
        .map_err(|_| Error::invalid(field, format!("{value:?} is not a date (YYYY-MM-DD)")))?;
    // Year 0 does not exist in PostgreSQL's calendar (1 BC precedes AD 1).
    if date.year() < 1 {
        return Err(Error::invalid(
            field,
            format!("{value:?} is out of range (years run from 0001)"),
        ));
    }
    Ok(date)
}

/// The longest request id: a UUID or a caller's own key fits many times.
pub const MAX_REQUEST_ID: usize = 200;

/// A caller's idempotency key: trimmed, at most [`MAX_REQUEST_ID`]
/// characters, none of them a control character (NUL included, which
/// PostgreSQL's text cannot hold).
pub fn request_id(value: &str) -> Result<String> {
    let value = value.trim();
    if value.chars().count() > MAX_REQUEST_ID {
        return Err(Error::invalid(
            "request_id",
            format!("is longer than {MAX_REQUEST_ID} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid("request_id", "holds a control character"));
    }
    Ok(value.to_owned())
}

/// Free text kept as given (a reason): anything but NUL, which PostgreSQL's
/// text cannot hold.
pub fn no_nul(field: &'static str, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(Error::invalid(field, "holds a NUL character"));
    }
    Ok(())
}

/// An inclusive date range whose start is not after its end.
pub fn date_range(from: &str, to: &str) -> Result<(NaiveDate, NaiveDate)> {
    let (from_date, to_date) = (date("from_date", from)?, date("to_date", to)?);
    if from_date > to_date {
        return Err(Error::invalid(
            "from_date",
            format!("{from_date} is after to_date {to_date}"),
        ));
    }
    Ok((from_date, to_date))
}

/// A batch size or limit: 0 means the default, at most `MAX_BATCH`.
pub fn batch(field: &'static str, value: i32) -> Result<i32> {
    match value {
        0 => Ok(DEFAULT_BATCH),
        1..=MAX_BATCH => Ok(value),
        _ => Err(Error::invalid(
            field,
            format!("{value} is out of range (1 to {MAX_BATCH}, or 0 for {DEFAULT_BATCH})"),
        )),
    }
}

/// A rate limit: a positive, finite number per second.
pub fn rate(field: &'static str, value: f64) -> Result<f64> {
    if !(value.is_finite() && value > 0.0) {
        return Err(Error::invalid(
            field,
            format!("{value} is not a positive number"),
        ));
    }
    // Beyond any batch's reach, and a number PostgreSQL's NUMERIC holds.
    if value > MAX_RATE {
        return Err(Error::invalid(
            field,
            format!("{value} is out of range (at most {MAX_RATE})"),
        ));
    }
    Ok(value)
}

/// The highest rate limit: a billion transactions a second is no limit.
pub const MAX_RATE: f64 = 1e9;

/// A pause between batches, in milliseconds: at most an hour.
pub fn delay_ms(field: &'static str, value: u32) -> Result<u32> {
    const MAX_DELAY_MS: u32 = 3_600_000;
    if value <= MAX_DELAY_MS {
        Ok(value)
    } else {
        Err(Error::invalid(
            field,
            format!("{value} is out of range (0 to {MAX_DELAY_MS})"),
        ))
    }
}

/// The transaction statuses a run may migrate: HERA's `posted`, and
/// `completed` (real HERA sales that carry GL lines often keep it).
pub const CANDIDATE_STATUSES: [&str; 2] = ["posted", "completed"];

/// The statuses to migrate, lower-cased, each once; none means `posted`.
pub fn candidate_statuses(values: &[String]) -> Result<Vec<String>> {
    let mut statuses: Vec<String> = Vec::new();
    for (index, value) in values.iter().enumerate() {
        let status = value.trim().to_ascii_lowercase();
        if !CANDIDATE_STATUSES.contains(&status.as_str()) {
            return Err(Error::invalid(
                format!("candidate_statuses[{index}]"),
                format!(
                    "{value:?} is not a status a migration may take (one of {})",
                    CANDIDATE_STATUSES.join(", ")
                ),
            ));
        }
        if !statuses.contains(&status) {
            statuses.push(status);
        }
    }
    if statuses.is_empty() {
        statuses.push(CANDIDATE_STATUSES[0].to_owned());
    }
    Ok(statuses)
}

/// One explicit mapping; an empty target excludes the source from migration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mapping {
    pub source_smart_code: String,
    pub target_smart_code: String,
}

/// Mappings whose codes are valid smart codes, each source mapped once.
pub fn mappings(pairs: impl IntoIterator<Item = (String, String)>) -> Result<Vec<Mapping>> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut checked = Vec::new();
    for (index, (source, target)) in pairs.into_iter().enumerate() {
        let (source, target) = (source.trim().to_owned(), target.trim().to_owned());
        let field = |name: &str| format!("smart_code_mappings[{index}].{name}");
        if !smart_code::is_valid(&source) {
            return Err(Error::invalid(
                field("source_smart_code"),
                format!("{source:?} is not a valid HERA smart code"),
            ));
        }
        if !target.is_empty() && !smart_code::is_valid(&target) {
            return Err(Error::invalid(
                field("target_smart_code"),
                format!("{target:?} is not a valid HERA smart code"),
            ));
        }
        if let Some(first) = seen.insert(smart_code::normalize(&source), index) {
            return Err(Error::invalid(
                field("source_smart_code"),
                format!("{source} is already mapped by smart_code_mappings[{first}]"),
            ));
        }
        checked.push(Mapping {
            source_smart_code: source,
            target_smart_code: target,
        });
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_dates_and_rates_the_database_could_not_hold_are_refused() {
        assert_eq!(request_id("  key-1 ").unwrap(), "key-1");
        assert!(request_id("a\0b").is_err());
        assert!(request_id("\u{1b}[31m").is_err());
        assert!(request_id(&"r".repeat(MAX_REQUEST_ID + 1)).is_err());
        assert!(date("from_date", "0000-01-01").is_err());
        assert!(date("from_date", "0001-01-01").is_ok());
        assert!(rate("max_transactions_per_second", f64::MAX).is_err());
        assert!(rate("max_transactions_per_second", MAX_RATE).is_ok());
        assert!(no_nul("reason", "wrong\0mapping").is_err());
    }

    fn pair(s: &str, t: &str) -> (String, String) {
        (s.into(), t.into())
    }

    #[test]
    fn dates_and_ranges() {
        assert!(date_range("2024-01-01", "2024-12-31").is_ok());
        let error = date_range("2024-12-31", "2024-01-01")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("from_date:"), "{error}");
        assert!(
            date("to_date", "31/12/2024")
                .unwrap_err()
                .to_string()
                .starts_with("to_date:")
        );
    }

    #[test]
    fn batches() {
        assert_eq!(batch("batch_limit", 0).unwrap(), 1000);
        assert!(batch("batch_limit", -1).is_err());
        assert!(batch("batch_limit", 5001).is_err());
    }

    #[test]
    fn candidate_statuses_default_to_posted_and_name_a_bad_one() {
        assert_eq!(candidate_statuses(&[]).unwrap(), ["posted"]);
        let both = ["Completed".to_owned(), "posted".into(), "completed".into()];
        assert_eq!(candidate_statuses(&both).unwrap(), ["completed", "posted"]);
        let bad = candidate_statuses(&["posted".into(), "draft".into()]).unwrap_err();
        assert!(
            bad.to_string().starts_with("candidate_statuses[1]:"),
            "{bad}"
        );
    }

    #[test]
    fn mappings_name_the_bad_entry() {
        let ok = mappings([pair(
            "HERA.SALON.POS.TXN.SALE.v1",
            "HERA.SALON.POS.TXN.SALE_V2.v2",
        )]);
        assert!(ok.is_ok());
        let bad = mappings([
            pair("HERA.SALON.POS.TXN.SALE.v1", ""),
            pair("HERA.SALON.POS.TXN.REFUND.v1", "NOPE"),
        ]);
        assert!(
            bad.unwrap_err()
                .to_string()
                .starts_with("smart_code_mappings[1].target_smart_code:")
        );
        let duplicate = mappings([
            pair("HERA.SALON.POS.TXN.SALE.v1", ""),
            pair("HERA.SALON.POS.TXN.SALE.V1", ""),
        ]);
        assert!(
            duplicate
                .unwrap_err()
                .to_string()
                .contains("already mapped")
        );
    }
}
