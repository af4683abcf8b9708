//! `kura meta`: the metadata store's own commands (schema migrations; copying an embedded
//! store into PostgreSQL).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use kura_core::pg_store::PgStore;

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
        .map_err(|e| anyhow::anyhow!("{}", e.message))
        .with_context(|| format!("metadata database {display}"))
}

pub async fn run(cmd: MetaCommand) -> anyhow::Result<()> {
    match cmd {
        MetaCommand::Migrate { meta } => {
            let store = PgStore::connect_only(&meta, 1)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let n = store.migrate().await.map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let v = store
                .schema_version()
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            println!("applied {n} migration(s); schema version {v}");
            Ok(())
        }
        MetaCommand::Copy { from, to } => {
            let _ = (from, to);
            anyhow::bail!("not built yet")
        }
    }
}
