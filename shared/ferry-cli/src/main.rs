//! `ferry`: the command line of Ferry.
//!
//! Today it has `doctor`, which checks that every service Ferry needs answers and is set up
//! right. The API subcommands (instances, tasks, consumer groups) arrive with the control plane.

mod doctor;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Ferry: MySQL/MariaDB change tracking and synchronization"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check that the source database, PostgreSQL, Kafka and the AWS endpoint answer, and that
    /// the source's binlog is set up for capture.
    Doctor(doctor::Args),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Doctor(args) => doctor::run(args).await,
    }
}
