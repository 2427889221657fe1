use super::*;

#[test]
fn segment_numbers_count_the_backlog() {
    let size = 16 * 1024 * 1024;
    let a = segment_number("000000010000000000000093", size).unwrap();
    let b = segment_number("0000000100000001000000A0", size).unwrap();
    assert_eq!(a, 0x93);
    assert_eq!(b, 256 + 0xA0);
    assert_eq!(segment_number("00000002.history", size), None);
    assert!(segment_number("000000010000000000000002.00000028.backup", size).is_some());
}

#[test]
fn archiving_off_is_unknown_never_pass() {
    let commands = Ok(("(disabled)".to_owned(), String::new()));
    let archiver = Err("not read".to_owned());
    for check in [
        wal_archiving(Some("off"), &commands, &archiver),
        last_archived(Some("off"), &archiver),
    ] {
        assert_eq!(check.result, Outcome::Unknown, "{check:?}");
        assert!(check.detail.contains("outside its view"), "{check:?}");
        assert!(!check.remedy.is_empty());
    }
}

#[test]
fn an_empty_or_trivial_archive_command_is_no_archive() {
    let archiver = Err("not read".to_owned());
    let empty = wal_archiving(Some("on"), &Ok((String::new(), String::new())), &archiver);
    assert_eq!(empty.result, Outcome::Fail);
    let trivial = wal_archiving(
        Some("on"),
        &Ok(("/bin/true".into(), String::new())),
        &archiver,
    );
    assert_eq!(trivial.result, Outcome::Warn);
}

#[test]
fn an_inactive_slot_warns_and_a_lost_one_fails() {
    let slot = |name: &str, active: bool, status: &str| Slot {
        slot_name: name.into(),
        slot_type: "physical".into(),
        active,
        wal_status: Some(status.into()),
        retained_bytes: Some(64.0 * 1024.0 * 1024.0),
    };
    assert_eq!(replication_slots(&Ok(vec![])).result, Outcome::Pass);
    assert_eq!(
        replication_slots(&Ok(vec![slot("a", true, "reserved")])).result,
        Outcome::Pass
    );
    let inactive = replication_slots(&Ok(vec![slot("gone", false, "extended")]));
    assert_eq!(inactive.result, Outcome::Warn);
    assert!(inactive.remedy.contains("pg_drop_replication_slot('gone')"));
    let lost = replication_slots(&Ok(vec![slot("x", false, "lost")]));
    assert_eq!(lost.result, Outcome::Fail);
}
