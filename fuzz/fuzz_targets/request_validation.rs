//! Request validation: any bytes a client can send, decoded as any request
//! message, is either accepted with values in range or refused as
//! INVALID_ARGUMENT whose BadRequest detail names a field the message has,
//! the same field the message text starts with. Never a panic, never another
//! code: decoding looks at nothing but the message.
#![no_main]

use std::sync::LazyLock;

use hera_migrate::{error::Result, migration::input::MAX_BATCH, proto, server::decode};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use prost_reflect::DescriptorPool;
use tonic::{Code, Status};
use tonic_types::StatusExt;

static POOL: LazyLock<DescriptorPool> =
    LazyLock::new(|| DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET).unwrap());

/// Checks one refusal against the request message it refused.
fn check_refusal(message_name: &str, error: hera_migrate::error::Error) {
    let text = error.to_string();
    let status = Status::from(error);
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "{message_name}: {text}"
    );
    let details = status.get_error_details();
    let violations = &details
        .bad_request()
        .unwrap_or_else(|| panic!("{message_name}: no BadRequest in {text:?}"))
        .field_violations;
    assert_eq!(violations.len(), 1, "{message_name}: {text}");
    let field = &violations[0].field;
    assert!(
        status.message().starts_with(&format!("{field}: ")),
        "{message_name}: {:?} does not start with its field {field:?}",
        status.message()
    );
    let root = field.split(['[', '.']).next().unwrap_or_default();
    let descriptor = POOL
        .get_message_by_name(&format!("hera.migration.v2.{message_name}"))
        .expect("the request message is in the descriptor set");
    assert!(
        descriptor.get_field_by_name(root).is_some(),
        "{message_name} has no field {root:?} (named by {text:?})"
    );
}

fn check<T>(message_name: &str, decoded: Result<T>, accepted: impl FnOnce(T)) {
    match decoded {
        Ok(value) => accepted(value),
        Err(error) => check_refusal(message_name, error),
    }
}

fn decoded<M: Message + Default>(bytes: &[u8]) -> Option<M> {
    M::decode(bytes).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    match selector % 12 {
        0 => {
            let Some(m) = decoded::<proto::PreviewCandidatesRequest>(bytes) else {
                return;
            };
            check("PreviewCandidatesRequest", decode::preview(&m), |_| {});
        }
        1 => {
            let Some(m) = decoded::<proto::StartMigrationRequest>(bytes) else {
                return;
            };
            check("StartMigrationRequest", decode::start(&m), |d| {
                let p = &d.request.parameters;
                assert!(p.from_date <= p.to_date, "{p:?}");
                assert!((1..=MAX_BATCH).contains(&p.batch_size), "{p:?}");
                let stored = serde_json::to_value(p).expect("parameters serialize");
                let read: hera_migrate::migration::run::Parameters =
                    serde_json::from_value(stored).expect("stored parameters read back");
                assert_eq!(&read, p, "parameters do not survive their row");
            });
        }
        2 => {
            let Some(m) = decoded::<proto::GetMigrationRequest>(bytes) else {
                return;
            };
            check(
                "GetMigrationRequest",
                decode::run(&m.organization_id, &m.migration_id),
                |_| {},
            );
        }
        3 => {
            let Some(m) = decoded::<proto::WatchMigrationRequest>(bytes) else {
                return;
            };
            check(
                "WatchMigrationRequest",
                decode::run(&m.organization_id, &m.migration_id),
                |_| {},
            );
        }
        4 => {
            let Some(m) = decoded::<proto::ListMigrationsRequest>(bytes) else {
                return;
            };
            check("ListMigrationsRequest", decode::list(&m), |d| {
                assert!(
                    d.request.page_size >= 1,
                    "page size {}",
                    d.request.page_size
                );
            });
        }
        5 => {
            let Some(m) = decoded::<proto::UpdateMigrationRequest>(bytes) else {
                return;
            };
            check("UpdateMigrationRequest", decode::update(&m), |_| {});
        }
        6 => {
            let Some(m) = decoded::<proto::ApplyReportingAliasesRequest>(bytes) else {
                return;
            };
            check("ApplyReportingAliasesRequest", decode::aliases(&m), |_| {});
        }
        7 => {
            let Some(m) = decoded::<proto::RollbackMigrationRequest>(bytes) else {
                return;
            };
            check("RollbackMigrationRequest", decode::rollback(&m), |_| {});
        }
        8 => {
            let Some(m) = decoded::<proto::CheckSecurityRequest>(bytes) else {
                return;
            };
            check("CheckSecurityRequest", decode::check_security(&m), |_| {});
        }
        9 => {
            let Some(m) = decoded::<proto::MeasurePerformanceRequest>(bytes) else {
                return;
            };
            check("MeasurePerformanceRequest", decode::performance(&m), |_| {});
        }
        10 => {
            let Some(m) = decoded::<proto::DocumentIncidentRequest>(bytes) else {
                return;
            };
            check("DocumentIncidentRequest", decode::incident(&m), |_| {});
        }
        _ => {
            let Some(m) = decoded::<proto::PauseMigrationRequest>(bytes) else {
                return;
            };
            let control = hera_migrate::migration::engine::Control::Pause;
            check(
                "PauseMigrationRequest",
                decode::control(&m.organization_id, &m.migration_id, control),
                |_| {},
            );
        }
    }
});
