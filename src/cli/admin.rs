//! (being written)

use clap::Subcommand;

use super::CliError;
use crate::store::SqlStore;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// (being written)
    #[command(hide = true)]
    Placeholder,
}

pub async fn run(_store: &SqlStore, _command: AdminCommand, _now: i64) -> Result<i32, CliError> {
    Ok(0)
}
