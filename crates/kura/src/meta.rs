//! `kura meta`: the metadata store's own commands (schema migrations; copying an embedded
//! store into PostgreSQL).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use std::sync::Arc;

use kura_core::pg_store::PgStore;
use kura_core::redb_store::RedbStore;

#[derive(Subcommand, Debug)]
pub enum MetaCommand {
    /// Apply the PostgreSQL schema migrations not yet applied (`kura serve` also does this at start).
    Migrate {
        /// PostgreSQL URL.
        #[arg(long, env = "KURA_META_URL", hide_env_values = true)]
        meta: String,
    },
    /// Copy an embedded store's metadata (DATA_DIR/meta.redb) into PostgreSQL; the blob files
    /// stay where they are. Resumable (rows already copied are kept) and verified (counts and a
    /// checksum of every row, on both sides).
    Copy {
        /// The data directory of the embedded store (stop its `kura serve` first).
        #[arg(long)]
        from: PathBuf,
        /// PostgreSQL URL.
        #[arg(long)]
        to: String,
    },
}

/// Connects to PostgreSQL and migrates; an unreachable database is an error naming the URL
/// (without its password).
pub async fn connect(url: &str, pool_size: usize) -> anyhow::Result<PgStore> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        anyhow::bail!("--meta must be a postgres:// URL (leave it unset for the embedded store)");
    }
    let display = kura_core::pg_store::redact_url(url);
    PgStore::connect(url, pool_size)
        .await
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("metadata database {display}"))
}

pub async fn run(cmd: MetaCommand) -> anyhow::Result<()> {
    match cmd {
        MetaCommand::Migrate { meta } => {
            let store = PgStore::connect_only(&meta, 1).await.map_err(anyhow::Error::msg)?;
            let n = store.migrate().await.map_err(anyhow::Error::msg)?;
            let v = store.schema_version().await.map_err(anyhow::Error::msg)?;
            println!("applied {n} migration(s); schema version {v}");
            Ok(())
        }
        MetaCommand::Copy { from, to } => copy(&from, &to).await,
    }
}

async fn copy(from: &std::path::Path, to: &str) -> anyhow::Result<()> {
    let path = from.join("meta.redb");
    if !path.is_file() {
        anyhow::bail!(
            "{} does not exist: --from must be the data directory of an embedded store",
            path.display()
        );
    }
    // redb takes an exclusive lock: a running `kura serve` on this directory is refused here.
    let source = RedbStore::open(&path)
        .map_err(|e| anyhow::anyhow!("opening {} (stop its kura serve first): {}", path.display(), e.message))?;
    let target = connect(to, 4).await?;
    println!(
        "copying {} into {} (blob files stay in {})",
        path.display(),
        target.display_url(),
        from.display()
    );
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} rows copied ({per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let progress = |n: u64| bar.set_position(n);
    let report = kura_core::copy::copy_redb_to_pg(Arc::new(source), &target, &progress).await;
    bar.finish_and_clear();
    let report = report.map_err(anyhow::Error::msg)?;
    println!("{:<12} {:>10}  checksum (both sides)", "table", "rows");
    for (table, (rows, sum)) in &report.source.0 {
        println!("{table:<12} {rows:>10}  {sum:032x}");
    }
    println!(
        "verified: {} rows, counts and checksums equal on both sides; {} inserted by this run",
        report.source.rows(),
        report.inserted
    );
    println!(
        "next: kura serve --data {} --meta <the URL> (on every gateway)",
        from.display()
    );
    Ok(())
}
