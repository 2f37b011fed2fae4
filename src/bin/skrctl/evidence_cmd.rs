//! `skrctl evidence verify | collect` (owner: evidence CLI).

use crate::output::Status;
use clap::Subcommand;
use std::path::Path;

/// Evidence subcommands.
#[derive(Subcommand)]
pub enum EvidenceCommand {}

/// Runs an evidence subcommand.
pub fn run(cmd: EvidenceCommand, _config: Option<&Path>) -> Status {
    match cmd {}
}
