//! The `kura` command: `kura serve` runs the OSS-compatible server; `kura bench` measures it.

mod bench;
mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kura",
    version,
    about = "Kura: a self-hosted object store that speaks the Alibaba Cloud OSS protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server on local disk.
    Serve(serve::ServeArgs),
    /// Measure upload throughput, Complete latency, ListParts and server memory.
    Bench(bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("KURA_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve(args) => rt.block_on(serve::run(args)),
        Command::Bench(args) => rt.block_on(bench::run(args)),
    }
}
