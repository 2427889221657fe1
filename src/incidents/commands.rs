//! The commands a recommended action names: the operator CLI's
//! (`hera-migrate resume`, `emergency-rollback`, `validate-migration`,
//! `assess-failure`), grpcurl calls of the README's form, and SQL to look at
//! the data (read-only queries, for psql).
use uuid::Uuid;

use super::assessment::{Assessment, LockSettings};
use crate::migration::run::{Parameters, SetAside};

pub struct Commands<'a> {
    org: Uuid,
    id: Uuid,
    parameters: &'a Parameters,
}

/// `text` inside a shell's double quotes.
fn quoted(text: &str) -> String {
    let short: String = text.chars().take(200).collect();
    let mut out = String::with_capacity(short.len() + 2);
    out.push('"');
    for c in short.chars() {
        match c {
            '"' | '\\' | '$' | '`' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// grpcurl against the README's local server, with the README's token.
fn grpcurl(method: &str, body: &serde_json::Value) -> String {
    format!(
        "grpcurl -plaintext -H \"authorization: Bearer $HERA_TOKEN\" -d '{body}' \
         127.0.0.1:50051 hera.migration.v2.MigrationService/{method}"
    )
}

impl<'a> Commands<'a> {
    pub fn of(a: &'a Assessment) -> Self {
        Self {
            org: a.organization_id(),
            id: a.id(),
            parameters: a.parameters(),
        }
    }

    fn cli(&self, command: &str) -> String {
        format!(
            "hera-migrate {command} --organization-id {} --migration-id {}",
            self.org, self.id
        )
    }

    pub fn resume(&self) -> String {
        self.cli("resume")
    }

    pub fn rollback(&self, why: &str) -> String {
        format!(
            "{} --reason {}",
            self.cli("emergency-rollback"),
            quoted(why)
        )
    }

    pub fn validate(&self, allow_partial: bool) -> String {
        let command = self.cli("validate-migration");
        if allow_partial {
            format!("{command} --allow-partial")
        } else {
            command
        }
    }

    pub fn assess(&self) -> String {
        self.cli("assess-failure")
    }

    /// A server whose batches wait longer on the business's locks.
    pub fn serve_with_lock_timeout(&self, lock: LockSettings) -> String {
        format!(
            "HERA_BATCH_LOCK_TIMEOUT_MS={} HERA_BATCH_LOCK_RETRIES={} hera-migrate serve",
            lock.timeout_ms.saturating_mul(4).max(2000),
            lock.retries.max(10)
        )
    }

    /// The sessions in a transaction that holds locks on universal_transactions.
    pub fn lock_holders(&self) -> String {
        "SELECT a.pid, a.usename, a.application_name, a.state, a.xact_start, \
         now() - a.xact_start AS open_for, left(a.query, 200) AS query \
         FROM pg_stat_activity a \
         WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() \
         AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid \
         AND l.relation = 'universal_transactions'::regclass) \
         ORDER BY a.xact_start;"
            .to_owned()
    }

    /// The run's quarantined transactions with their rules, reasons and GL
    /// sides, read from the run's own list.
    pub fn quarantined_sql(&self, quarantined: &[SetAside]) -> String {
        let examples: Vec<String> = quarantined
            .iter()
            .filter_map(|q| q.transaction_id)
            .take(5)
            .map(|id| id.to_string())
            .collect();
        format!(
            "-- e.g. {}\n\
             SELECT t.id, t.transaction_code, t.smart_code, t.transaction_status, t.total_amount, \
             q ->> 'rule' AS rule, q ->> 'reason' AS reason, \
             (SELECT sum(l.line_amount) FROM universal_transaction_lines l WHERE l.transaction_id = t.id \
             AND l.smart_code LIKE '%.GL.%' AND upper(l.line_data ->> 'side') = 'DR') AS gl_debits, \
             (SELECT sum(l.line_amount) FROM universal_transaction_lines l WHERE l.transaction_id = t.id \
             AND l.smart_code LIKE '%.GL.%' AND upper(l.line_data ->> 'side') = 'CR') AS gl_credits \
             FROM universal_transactions r, jsonb_array_elements(r.metadata -> 'quarantined') q, \
             universal_transactions t \
             WHERE r.organization_id = '{org}' AND r.id = '{id}' \
             AND t.organization_id = '{org}' AND t.id = (q ->> 'transaction_id')::uuid \
             ORDER BY t.transaction_date, t.id;",
            examples.join(", "),
            org = self.org,
            id = self.id,
        )
    }

    /// The v1 codes of the candidates still in the run's range.
    pub fn v1_codes_left(&self) -> String {
        let statuses: Vec<String> = self
            .parameters
            .candidate_statuses
            .iter()
            .map(|s| format!("'{}'", s.replace('\'', "''")))
            .collect();
        format!(
            "SELECT t.smart_code, count(*) FROM universal_transactions t \
             WHERE t.organization_id = '{}' AND t.transaction_date >= '{}' \
             AND t.transaction_date < date '{}' + 1 \
             AND hera_migration_is_candidate_v2(t.transaction_status, t.smart_code, t.metadata, \
             ARRAY[{}]) GROUP BY 1 ORDER BY 2 DESC;",
            self.org,
            self.parameters.from_date,
            self.parameters.to_date,
            statuses.join(", ")
        )
    }

    /// A new run over the same range, statuses and policy.
    pub fn new_run(&self) -> String {
        let p = self.parameters;
        grpcurl(
            "StartMigration",
            &serde_json::json!({
                "organization_id": self.org,
                "from_date": p.from_date.to_string(),
                "to_date": p.to_date.to_string(),
                "batch_size": p.batch_size,
                "candidate_statuses": p.candidate_statuses,
                "closed_period_policy": p.closed_period_policy.as_str(),
            }),
        )
    }

    /// Reporting aliases for what the run skipped.
    pub fn aliases(&self) -> String {
        grpcurl(
            "ApplyReportingAliases",
            &serde_json::json!({"organization_id": self.org, "migration_id": self.id}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::quoted;

    #[test]
    fn a_reason_is_quoted_for_the_shell() {
        assert_eq!(quoted("a \"b\" $c\nd"), "\"a \\\"b\\\" \\$c d\"");
    }
}
