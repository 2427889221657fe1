//! The commands that check and report: environment, backups, performance,
//! security, preview, validation, assessment and incident reports.
use super::{
    Failure, Outcome,
    args::{self, Output},
    client, output,
};
use crate::proto::*;

fn result_name(result: i32) -> &'static str {
    CheckResult::try_from(result).map_or("?", |r| r.short_name())
}

pub async fn environment(a: args::Checked, backups_only: bool) -> Outcome {
    let mut client = client::connect(&a.connection).await?;
    let request = CheckEnvironmentRequest {
        organization_id: a.org.organization_id,
    };
    let mut response = client.check_environment(request).await?.into_inner();
    if backups_only {
        response
            .checks
            .retain(|check| check.name.starts_with("backup"));
    }
    output::result(
        a.connection.output,
        &response,
        "hera.migration.v2.CheckEnvironmentResponse",
        |r| {
            let mut text = format!(
                "PostgreSQL {}, schema {} ({})\n",
                r.database_version, r.schema_version, r.schema_mode
            );
            for check in &r.checks {
                text.push_str(&format!(
                    "{:<7} {}: {}\n",
                    result_name(check.result),
                    check.name,
                    check.detail
                ));
                if !check.remedy.is_empty() {
                    text.push_str(&format!("        remedy: {}\n", check.remedy));
                }
            }
            text.trim_end().to_owned()
        },
    );
    failed_if(
        response
            .checks
            .iter()
            .any(|c| c.result() == CheckResult::Fail),
        "a check failed",
    )
}

fn failed_if(failed: bool, why: &str) -> Outcome {
    if failed {
        Err(Failure::failed(why.to_owned()))
    } else {
        Ok(())
    }
}

pub async fn performance(a: args::Measured, baseline: bool) -> Outcome {
    let mut client = client::connect(&a.connection).await?;
    let kind = if baseline {
        MeasurementKind::Baseline
    } else {
        MeasurementKind::Test
    };
    let request = MeasurePerformanceRequest {
        organization_id: a.org.organization_id,
        kind: kind.into(),
        batch_size: a.batch_size,
        samples: a.samples,
        regression_threshold: a.regression_threshold,
    };
    let response = client.measure_performance(request).await?.into_inner();
    output::result(
        a.connection.output,
        &response,
        "hera.migration.v2.MeasurePerformanceResponse",
        measurements_text,
    );
    if response.regressed {
        return Err(Failure::failed(format!(
            "a measurement regressed beyond {}x its baseline",
            response.regression_threshold
        )));
    }
    failed_if(
        response
            .measurements
            .iter()
            .any(|m| m.result() == CheckResult::Fail),
        "a measurement failed",
    )
}

/// "PASS fiscal_period_validation: p50 0.41 ms, p95 0.60, p99 0.72 (20 samples,
/// threshold 10 ms) | 1.08x baseline".
fn measurements_text(r: &MeasurePerformanceResponse) -> String {
    r.measurements
        .iter()
        .map(|m| {
            let versus = if m.baseline_ms > 0.0 {
                let flag = if m.regressed { " REGRESSED" } else { "" };
                format!(" | {:.2}x baseline {:.2} ms{flag}", m.ratio, m.baseline_ms)
            } else {
                String::new()
            };
            format!(
                "{:<7} {}: p50 {:.2} ms, p95 {:.2}, p99 {:.2} ({} samples, threshold {:.0} ms){versus}",
                result_name(m.result),
                m.name,
                m.p50_ms,
                m.p95_ms,
                m.p99_ms,
                m.samples,
                m.threshold_ms
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn security(a: args::Checked) -> Outcome {
    let mut client = client::connect(&a.connection).await?;
    let request = CheckSecurityRequest {
        organization_id: a.org.organization_id,
        ..Default::default()
    };
    let response = client.check_security(request).await?.into_inner();
    output::result(
        a.connection.output,
        &response,
        "hera.migration.v2.CheckSecurityResponse",
        |r| {
            format!(
                "user {} role {}: migration {} ({})",
                r.user_id,
                r.role,
                if r.migration_allowed {
                    "allowed"
                } else {
                    "NOT allowed"
                },
                r.reasons.join("; ")
            )
        },
    );
    failed_if(
        !response.migration_allowed,
        "the caller may not migrate this organization",
    )
}

pub async fn preview(a: args::Previewed) -> Outcome {
    let mut client = client::connect(&a.connection).await?;
    let policy = if a.scope.range.post_to_open_period {
        ClosedPeriodPolicy::PostToOpenPeriod
    } else {
        ClosedPeriodPolicy::Skip
    };
    let request = PreviewCandidatesRequest {
        organization_id: a.scope.org.organization_id,
        from_date: a.scope.range.from,
        to_date: a.scope.range.to,
        batch_limit: 5,
        closed_period_policy: policy.into(),
        ..Default::default()
    };
    let plan = client.preview_candidates(request).await?.into_inner();
    output::result(
        a.connection.output,
        &plan,
        "hera.migration.v2.PreviewCandidatesResponse",
        |p| {
            let predicted = p.prediction.clone().unwrap_or_default();
            format!(
                "{} candidate(s): {} to migrate, {} skipped (closed period), {} skipped (unmapped), {} quarantined; \
             about {:.1} s ({}); plan {}",
                p.total_candidates,
                predicted.migrated,
                predicted.skipped_closed,
                predicted.skipped_unmapped,
                predicted.quarantined,
                p.estimated_processing_time_ms as f64 / 1000.0,
                p.estimate_basis,
                p.plan_fingerprint
            )
        },
    );
    Ok(())
}

pub fn validation_text(report: &ValidationReport) -> String {
    let mut text = format!("validation {}:\n", report.overall().short_name());
    for check in &report.checks {
        text.push_str(&format!(
            "{:<5} {}: {}\n",
            result_name(check.result),
            check.name,
            check.summary
        ));
    }
    text.trim_end().to_owned()
}

pub async fn validate(a: args::Validate) -> Outcome {
    let mut client = client::connect(&a.connection).await?;
    let request = ValidateMigrationRequest {
        organization_id: a.run.org.organization_id,
        migration_id: a.run.migration_id,
        allow_partial: a.allow_partial,
    };
    let report = client
        .validate_migration(request)
        .await?
        .into_inner()
        .into_report();
    output::result(
        a.connection.output,
        &report,
        "hera.migration.v2.ValidationReport",
        validation_text,
    );
    failed_if(report.overall() == CheckResult::Fail, "validation FAILED")
}

pub async fn assess(a: args::Steered) -> Outcome {
    let mut client = client::connect(&a.connection).await?;
    let request = AssessFailureRequest {
        organization_id: a.run.org.organization_id,
        migration_id: a.run.migration_id,
    };
    let response = client.assess_failure(request).await?.into_inner();
    output::result(
        a.connection.output,
        &response,
        "hera.migration.v2.AssessFailureResponse",
        assessment_text,
    );
    Ok(())
}

/// The diagnosis, then each next action with its command.
fn assessment_text(r: &AssessFailureResponse) -> String {
    let mut text = format!(
        "migration {} is {} ({}) after batch {}; ledger {}; rollback {}\n{}\n",
        r.migration_id,
        r.state().short_name(),
        r.phase().short_name(),
        r.last_batch_number,
        if r.ledger_balanced {
            "balanced"
        } else {
            "NOT balanced"
        },
        if r.rollback_recommended {
            "RECOMMENDED"
        } else {
            "not recommended"
        },
        r.summary,
    );
    if !r.last_error.is_empty() {
        text.push_str(&format!("error: {}\n", r.last_error));
    }
    for action in &r.actions {
        text.push_str(&format!(
            "next: {}: {}\n      {}\n",
            action.action, action.reason, action.command
        ));
    }
    text.trim_end().to_owned()
}

pub async fn incident(a: args::Incident) -> Outcome {
    let mut client = client::connect(&a.connection).await?;
    let request_id = a
        .request_id
        .clone()
        .unwrap_or_else(|| format!("incident:{}:{}", a.run.migration_id, a.title));
    let severity =
        Severity::from_short_name(&a.severity.trim().to_uppercase()).ok_or_else(|| {
            Failure::usage(format!("--severity: {:?} is not SEV1 to SEV4", a.severity))
        })?;
    let request = DocumentIncidentRequest {
        organization_id: a.run.org.organization_id,
        migration_id: a.run.migration_id,
        request_id,
        title: a.title,
        description: a.description,
        severity: severity.into(),
    };
    let response = client.document_incident(request).await?.into_inner();
    match (&a.out, a.connection.output) {
        (_, Output::Json) => println!(
            "{}",
            output::json(&response, "hera.migration.v2.DocumentIncidentResponse")
        ),
        (Some(path), Output::Text) => {
            let report = report_of(&response);
            std::fs::write(path, report)
                .map_err(|e| Failure::failed(format!("--out {}: {e}", path.display())))?;
            println!(
                "incident {} written to {}",
                response.incident_id,
                path.display()
            );
        }
        (None, Output::Text) => println!("{}", report_of(&response)),
    }
    Ok(())
}

/// The report, as recorded.
fn report_of(response: &DocumentIncidentResponse) -> String {
    response.report_markdown.clone()
}
