//! Smart-code parsing against the rule it implements, written as the regular
//! expression HERA documents (the SQL function hera_smart_code_is_valid is
//! the same rule). What the hand-written parser accepts, the rule accepts;
//! what the rule accepts in ASCII with a version that fits, the parser
//! accepts; normalizing is idempotent and keeps validity and the version.
#![no_main]

use std::sync::LazyLock;

use hera_migrate::migration::smart_code::{is_valid, normalize, version};
use libfuzzer_sys::fuzz_target;
use regex::Regex;

static RULE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^HERA\.[A-Z0-9]{3,15}(?:\.[A-Z0-9_]{2,30}){3,8}\.v[0-9]+$").unwrap()
});

/// The rule's reading: all but the version suffix upper-cased, the suffix's
/// `v` either case.
fn rule_accepts(code: &str) -> bool {
    let Some((body, suffix)) = code.rsplit_once('.') else {
        return false;
    };
    let Some(digits) = suffix.strip_prefix(['v', 'V']) else {
        return false;
    };
    RULE.is_match(&format!("{}.v{digits}", body.to_ascii_uppercase()))
}

fn version_fits(code: &str) -> bool {
    code.rsplit_once(['v', 'V'])
        .is_some_and(|(_, digits)| digits.parse::<u32>().is_ok())
}

fuzz_target!(|code: &str| {
    let valid = is_valid(code);
    if valid {
        assert!(
            rule_accepts(code),
            "the parser accepts {code:?}, the rule does not"
        );
        assert!(version(code).is_some(), "valid {code:?} has no version");
    } else if code.is_ascii() && rule_accepts(code) {
        assert!(
            !version_fits(code),
            "the rule accepts {code:?}, the parser does not"
        );
    }

    let normal = normalize(code);
    assert_eq!(
        normalize(&normal),
        normal,
        "normalize is not idempotent on {code:?}"
    );
    assert_eq!(
        is_valid(&normal),
        valid,
        "normalizing {code:?} changes its validity"
    );
    assert_eq!(
        version(&normal),
        version(code),
        "normalizing {code:?} changes its version"
    );
});
