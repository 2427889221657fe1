//! CheckEnvironment's checks of what hera-migrate installed or attached to:
//! the schema's mode and version, the column contract, the indexes it needs,
//! and row-level security.
use super::{Check, Operations, Outcome, Readable, environment::Session, readable};
use crate::{
    db::{
        advice::{self, IndexAdvice},
        contract::{self, ContractViolation},
        schema::{self, SACRED_SIX, SCHEMA_VERSION, SERVICE_ROLE, SchemaInfo, SchemaMode},
    },
    error::Result,
};

const ROW_SECURITY: &str = include_str!("../../sql/queries/environment_row_security.sql");

pub(super) struct Installation {
    pub checks: Vec<Check>,
    /// The recorded schema version (this server's when none is recorded).
    pub version: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct TableSecurity {
    table_name: String,
    enabled: bool,
    forced: bool,
    owner: String,
    policies: Vec<String>,
}

pub(super) async fn checks(ops: &Operations, session: &Readable<Session>) -> Result<Installation> {
    let mut conn = ops.admin.acquire().await?;
    let recorded = readable(
        "hera_migrate_schema_info()",
        schema::recorded(&mut conn).await,
    )?;
    let version = match &recorded {
        Ok(Some(info)) => info.version.to_string(),
        _ => SCHEMA_VERSION.to_string(),
    };
    let mut checks = vec![match &recorded {
        Ok(recorded) => schema_mode(recorded.as_ref(), &ops.schema),
        Err(why) => Check::unreadable("schema_mode", why),
    }];
    checks.push(match contract::verify(&mut conn).await {
        Ok(()) => column_contract(&[]),
        Err(ContractViolation::Columns(problems)) => {
            column_contract(&problems.iter().map(ToString::to_string).collect::<Vec<_>>())
        }
        Err(ContractViolation::Database(error)) => {
            let why = readable::<()>("information_schema.columns", Err(error))?
                .err()
                .unwrap_or_default();
            Check::unreadable("column_contract", &why)
        }
    });
    for advised in advice::ADVISED {
        let served = readable("pg_index", advice::serving(&mut conn, advised).await)?;
        checks.push(index(advised, served));
    }
    let tables = readable(
        "pg_class and pg_policy",
        sqlx::query_as(ROW_SECURITY)
            .bind(SACRED_SIX)
            .fetch_all(&mut *conn)
            .await,
    )?;
    checks.push(match (session, &tables) {
        (Ok(session), Ok(tables)) => row_security(ops.schema.mode, session, tables),
        (Err(why), _) | (_, Err(why)) => Check::unreadable("row_level_security", why),
    });
    Ok(Installation { checks, version })
}

fn schema_mode(recorded: Option<&SchemaInfo>, ours: &SchemaInfo) -> Check {
    const NAME: &str = "schema_mode";
    let restart = "restart every hera-migrate server on one version: each start installs its \
                   functions and records hera_migrate_schema_info()";
    let Some(recorded) = recorded else {
        return Check::not_passing(
            NAME,
            Outcome::Fail,
            "hera_migrate_schema_info() is missing: hera-migrate's functions are not installed here",
            restart,
        );
    };
    if recorded.version != ours.version || recorded.mode != ours.mode {
        return Check::not_passing(
            NAME,
            Outcome::Fail,
            format!(
                "hera_migrate_schema_info() records version {} ({}), this server installed \
                 version {} ({}): another hera-migrate has installed its SQL since",
                recorded.version,
                recorded.mode.as_str(),
                ours.version,
                ours.mode.as_str()
            ),
            restart,
        );
    }
    let what = match ours.mode {
        SchemaMode::Owned => {
            "owned: hera-migrate created the six tables, their indexes and row-level security"
        }
        SchemaMode::Attached => {
            "attached: an existing HERA schema; hera-migrate created and altered no table and \
             installed only its functions"
        }
    };
    Check::pass(
        NAME,
        format!(
            "{what} (schema version {}, hera_migrate_schema_info())",
            ours.version
        ),
    )
}

fn column_contract(problems: &[String]) -> Check {
    const NAME: &str = "column_contract";
    if problems.is_empty() {
        let columns: usize = contract::CONTRACT.iter().map(|(_, c)| c.len()).sum();
        Check::pass(
            NAME,
            format!(
                "every column hera-migrate reads or writes exists with a compatible type \
                 ({columns} columns of the six tables, and their audit columns)"
            ),
        )
    } else {
        Check::not_passing(
            NAME,
            Outcome::Fail,
            problems.join("; "),
            "bring the HERA schema up to date (hera-migrate never alters a table it did not \
             create), then restart hera-migrate",
        )
    }
}

fn index(advised: &IndexAdvice, served: Readable<Option<String>>) -> Check {
    let name = format!("index_{}", advised.index_name());
    let key = format!("{} ({})", advised.table, advised.leading.join(", "));
    match served {
        Ok(Some(existing)) => Check::pass(name, format!("{key}: served by {existing}")),
        Ok(None) => Check::not_passing(
            name,
            Outcome::Warn,
            format!(
                "no valid index of {key} leads with those columns: {}",
                advised.why
            ),
            advised.create,
        ),
        Err(why) => Check::unreadable(name, &why),
    }
}

fn row_security(mode: SchemaMode, session: &Session, tables: &[TableSecurity]) -> Check {
    const NAME: &str = "row_level_security";
    let role = &session.role;
    let missing: Vec<&str> = SACRED_SIX
        .iter()
        .copied()
        .filter(|t| !tables.iter().any(|s| s.table_name == *t))
        .collect();
    // The tables whose policies apply to the service's role.
    let applies: Vec<&str> = tables
        .iter()
        .filter(|t| t.enabled && !session.bypasses_rls && (t.owner != *role || t.forced))
        .map(|t| t.table_name.as_str())
        .collect();
    match mode {
        SchemaMode::Owned => {
            let mut problems: Vec<String> = missing
                .iter()
                .map(|t| format!("table {t} is missing"))
                .collect();
            if role != SERVICE_ROLE {
                problems.push(format!(
                    "the service's sessions work as {role}, not {SERVICE_ROLE}"
                ));
            }
            if session.bypasses_rls {
                problems.push(format!(
                    "{role} bypasses row-level security (superuser or BYPASSRLS)"
                ));
            }
            for t in tables {
                if !applies.contains(&t.table_name.as_str()) {
                    problems.push(format!(
                        "{}: row-level security does not apply to {role}",
                        t.table_name
                    ));
                }
                if !t.policies.iter().any(|p| p == "hera_migrate_org_isolation") {
                    problems.push(format!(
                        "{}: no policy hera_migrate_org_isolation",
                        t.table_name
                    ));
                }
            }
            if problems.is_empty() {
                Check::pass(
                    NAME,
                    format!(
                        "the service's sessions work as {SERVICE_ROLE} (login role {}), which \
                         does not bypass row-level security; policy hera_migrate_org_isolation \
                         on all six tables confines each transaction to one organization",
                        session.login_role
                    ),
                )
            } else {
                Check::not_passing(
                    NAME,
                    Outcome::Fail,
                    problems.join("; "),
                    format!(
                        "restart hera-migrate (its install re-creates {SERVICE_ROLE}, its grants \
                         and the policies); never give {SERVICE_ROLE} BYPASSRLS or the tables"
                    ),
                )
            }
        }
        SchemaMode::Attached => {
            let each: Vec<String> = tables
                .iter()
                .map(|t| match (t.enabled, t.policies.is_empty()) {
                    (false, _) => format!("{} off", t.table_name),
                    (true, true) => format!("{} on, no policy", t.table_name),
                    (true, false) => {
                        format!("{} on (policies {})", t.table_name, t.policies.join(", "))
                    }
                })
                .collect();
            let exempt = if session.bypasses_rls {
                " (superuser or BYPASSRLS: no policy applies to it)"
            } else {
                ""
            };
            let detail = format!(
                "row-level security: {}; the service works as the login role {role}{exempt}, \
                 isolating organizations by its own filter in every query",
                each.join("; ")
            );
            if applies.is_empty() {
                Check::pass(NAME, detail)
            } else {
                Check::not_passing(
                    NAME,
                    Outcome::Warn,
                    format!(
                        "{detail}; HERA's policies apply to {role} on {}: rows they hide from \
                         it are invisible to previews and batches",
                        applies.join(", ")
                    ),
                    format!(
                        "check that HERA's policies let {role} see the organization's rows, or \
                         connect as a role that owns the tables or has BYPASSRLS"
                    ),
                )
            }
        }
    }
}
