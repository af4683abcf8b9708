//! The `kura` command: `kura serve` runs the OSS-compatible server, `kura bench` measures it,
//! and the client commands (`cp`, `ls`, `rm`, `mb`, `rb`, `mpu`) talk to any OSS endpoint.

mod bench;
mod cli;
mod meta;
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
    #[command(flatten)]
    global: cli::Global,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server on local disk.
    Serve(serve::ServeArgs),
    /// Measure upload throughput, Complete latency, ListParts and server memory.
    Bench(bench::BenchArgs),
    /// Copy a local file to oss://bucket/key or back: parallel parts, resumable, CRC-64 checked.
    Cp(cli::CpArgs),
    /// List buckets, or objects under oss://bucket[/prefix].
    Ls { target: Option<String> },
    /// Delete an object.
    Rm { target: String },
    /// Make a bucket.
    Mb { target: String },
    /// Remove an empty bucket.
    Rb { target: String },
    /// Multipart uploads: list, show parts, abort.
    #[command(subcommand)]
    Mpu(cli::Mpu),
    /// The metadata store: schema migrations, copying an embedded store into PostgreSQL.
    #[command(subcommand)]
    Meta(meta::MetaCommand),
}

/// Part buffers (megabytes each) are allocated and freed all the time. glibc raises its mmap
/// threshold after the first such free, after which the buffers come from per-thread heaps
/// that keep the memory: pin the threshold so big buffers are always mapped and unmapped.
fn pin_mmap_threshold() {
    // SAFETY: mallopt only changes allocator tuning; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn main() -> anyhow::Result<()> {
    pin_mmap_threshold();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("KURA_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let g = cli.global;
    let code = match cli.command {
        Command::Serve(args) => return rt.block_on(serve::run(args)),
        Command::Bench(args) => return rt.block_on(bench::run(args)),
        Command::Meta(cmd) => return rt.block_on(meta::run(cmd)),
        Command::Cp(args) => rt.block_on(cli::cp(&g, args)),
        Command::Ls { target } => rt.block_on(cli::ls(&g, target)),
        Command::Rm { target } => rt.block_on(cli::rm(&g, target)),
        Command::Mb { target } => rt.block_on(cli::mb(&g, target)),
        Command::Rb { target } => rt.block_on(cli::rb(&g, target)),
        Command::Mpu(cmd) => rt.block_on(cli::mpu(&g, cmd)),
    };
    drop(rt);
    std::process::exit(code)
}
