//! `skrctl config check | show` (owner: config).

use crate::output::Status;
use clap::Subcommand;
use std::path::Path;

/// Configuration subcommands.
#[derive(Subcommand)]
pub enum ConfigCommand {}

/// Runs a config subcommand.
pub fn run(cmd: ConfigCommand, _config: Option<&Path>) -> Status {
    match cmd {}
}
