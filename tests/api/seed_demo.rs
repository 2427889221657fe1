//! `hera-migrate seed-demo`: what it says it made is in the database, balanced.
