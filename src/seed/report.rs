//! The text rendering of a [`SeedReport`] (the JSON one is its `Serialize`).
use std::fmt;

use super::{PeriodStatusCounts, SeedReport, SeededOrganization};

impl fmt::Display for SeedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.totals;
        writeln!(
            f,
            "seed-demo run {} (seed {}): {} organization(s), {} transactions, {} lines, total {} in {:.2} s ({:.0} transactions/s)",
            self.run_tag,
            self.seed,
            t.organizations,
            t.transactions,
            t.lines,
            t.total_amount,
            self.elapsed_seconds,
            self.transactions_per_second,
        )?;
        writeln!(
            f,
            "  dates {} .. {}, {} lines per transaction, {} chunk(s), setup {:.2} s",
            self.from, self.to, self.lines_per_transaction, self.chunks, self.setup_seconds,
        )?;
        writeln!(
            f,
            "  {} users, {} GL accounts, {} fiscal periods",
            t.users, t.gl_accounts, t.fiscal_periods,
        )?;
        writeln!(
            f,
            "  platform organization {} ({}), system user {}",
            self.platform.organization_code,
            self.platform.organization_id,
            self.platform.system_user_id,
        )?;
        for org in &self.organizations {
            writeln!(f)?;
            write!(f, "{org}")?;
        }
        Ok(())
    }
}

impl fmt::Display for SeededOrganization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}  {}", self.code, self.name)?;
        writeln!(
            f,
            "  id {}, organization entity {}",
            self.id, self.organization_entity_id
        )?;
        writeln!(f, "  users:")?;
        let name_width = self.users.iter().map(|u| u.name.len()).max().unwrap_or(0);
        let email_width = self.users.iter().map(|u| u.email.len()).max().unwrap_or(0);
        for user in &self.users {
            writeln!(
                f,
                "    {:<12}  {:<name_width$}  {:<email_width$}  {}",
                user.role, user.name, user.email, user.id,
            )?;
        }
        let codes: Vec<&str> = self.gl_accounts.iter().map(|a| a.code.as_str()).collect();
        writeln!(
            f,
            "  GL accounts: {} ({})",
            self.gl_accounts.len(),
            codes.join(", ")
        )?;
        match (self.fiscal_periods.first(), self.fiscal_periods.last()) {
            (Some(first), Some(last)) => writeln!(
                f,
                "  fiscal periods: {} ({} .. {}): {}",
                self.fiscal_periods.len(),
                first.period_code,
                last.period_code,
                self.period_status,
            )?,
            _ => writeln!(f, "  fiscal periods: none")?,
        }
        writeln!(
            f,
            "  transactions: {}, lines: {}, total {}",
            self.transactions, self.lines, self.total_amount,
        )
    }
}

impl fmt::Display for PeriodStatusCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} CLOSED, {} LOCKED, {} OPEN",
            self.closed, self.locked, self.open
        )
    }
}
