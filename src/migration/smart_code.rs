//! HERA's smart codes: `HERA.<MODULE>.<SEG>...v<N>`, matching
//! `^HERA\.[A-Z0-9]{3,15}(?:\.[A-Z0-9_]{2,30}){3,8}\.v[0-9]+$` after
//! upper-casing all but the version suffix, whose `v` may be either case.
//! (The same rule is `hera_smart_code_is_valid` in SQL.)

/// Whether `code` is a valid smart code.
pub fn is_valid(code: &str) -> bool {
    let Some((body, version)) = split_version(code) else {
        return false;
    };
    let mut segments = body.split('.');
    if !segments
        .next()
        .is_some_and(|s| s.eq_ignore_ascii_case("HERA"))
    {
        return false;
    }
    let module_ok = segments.next().is_some_and(|s| {
        (3..=15).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric())
    });
    let rest: Vec<&str> = segments.collect();
    let rest_ok = (3..=8).contains(&rest.len())
        && rest.iter().all(|s| {
            (2..=30).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    module_ok && rest_ok && version.is_some()
}

/// The form codes are compared in: body upper-cased, version suffix lower-cased.
pub fn normalize(code: &str) -> String {
    match split_version(code) {
        Some((body, Some(version))) => format!("{}.v{version}", body.to_ascii_uppercase()),
        _ => code.to_ascii_uppercase(),
    }
}

/// The version number, if the code ends in `.v<N>` / `.V<N>`.
pub fn version(code: &str) -> Option<u32> {
    split_version(code).and_then(|(_, version)| version)
}

fn split_version(code: &str) -> Option<(&str, Option<u32>)> {
    let (body, suffix) = code.rsplit_once('.')?;
    let digits = suffix.strip_prefix(['v', 'V'])?;
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Some((body, None));
    }
    Some((body, digits.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hera_codes_are_valid_in_either_version_case() {
        for code in [
            "HERA.SALON.POS.TXN.SALE.v1",
            "HERA.SALON.POS.TXN.SALE.V1",
            "HERA.ACCOUNTING.AR.TXN.CUSTOMER_INVOICE.v2",
            "hera.salon.pos.txn.sale.v1",
        ] {
            assert!(is_valid(code), "{code}");
        }
    }

    #[test]
    fn malformed_codes_are_not() {
        for code in [
            "",
            "HERA.SALON.POS.TXN.SALE",
            "HERA.SALON.POS.v1",
            "HERA.SA.POS.TXN.SALE.v1",
            "ERP.SALON.POS.TXN.SALE.v1",
            "HERA.SALON.POS.TXN.S.v1",
            "HERA.SALON.POS.TXN.SALE.vx",
            "HERA.SALON.POS.TXN.SA-LE.v1",
            "HERA.SALON.A1.B2.C3.D4.E5.F6.G7.H8.I9.v1",
        ] {
            assert!(!is_valid(code), "{code}");
        }
    }

    #[test]
    fn normal_form_and_version() {
        assert_eq!(
            normalize("hera.salon.pos.txn.sale.V1"),
            "HERA.SALON.POS.TXN.SALE.v1"
        );
        assert_eq!(version("HERA.SALON.POS.TXN.SALE.V12"), Some(12));
        assert_eq!(version("HERA.SALON"), None);
    }
}
