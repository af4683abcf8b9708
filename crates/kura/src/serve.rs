//! `kura serve`: opens the data directory, settles the root credentials, listens.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use kura_core::{Config, Kura};
use kura_server::{Credentials, State};

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Data directory: blob files, and the embedded metadata database unless --meta names
    /// another. Gateways sharing a PostgreSQL database share this directory too.
    #[arg(long, default_value = "./kura-data")]
    pub data: PathBuf,
    /// Metadata store: a PostgreSQL URL (`postgres://user:pass@host:5432/db`, TLS with
    /// `sslmode=require`) for several gateways over one database; unset for the embedded store
    /// in the data directory.
    #[arg(long, env = "KURA_META_URL", hide_env_values = true)]
    pub meta: Option<String>,
    /// With --meta (gateways sharing the data directory): seconds before an orphan sweep may
    /// remove a file that another gateway could still be writing or committing.
    #[arg(long, default_value_t = 3600)]
    pub shared_file_grace_secs: u64,
    /// Objects up to this many bytes are kept in the embedded metadata store instead of a file
    /// (one shared commit makes them durable); 0 keeps every object in files. At most 524287.
    /// Ignored with --meta (PostgreSQL keeps every new object in files).
    #[arg(long, default_value_t = kura_core::service::DEFAULT_INLINE_MAX)]
    pub inline_max_bytes: usize,
    /// Seconds a RestoreObject of an archived object takes before its bytes can be read.
    #[arg(long, default_value_t = 1)]
    pub restore_delay_secs: u64,
    /// The embedded metadata store's page cache, MiB (its largest use of memory).
    #[arg(long, default_value_t = 256)]
    pub meta_cache_mib: usize,
    /// Connections each gateway keeps to the PostgreSQL metadata database.
    #[arg(long, default_value_t = 16)]
    pub meta_pool_size: usize,
    /// Root access key id; generated and kept in the data directory when not given.
    #[arg(long, env = "KURA_ACCESS_KEY_ID")]
    pub access_key_id: Option<String>,
    /// Root access key secret.
    #[arg(long, env = "KURA_ACCESS_KEY_SECRET", hide_env_values = true)]
    pub access_key_secret: Option<String>,
    /// Region reported by bucket info and location.
    #[arg(long, default_value = "cn-hangzhou")]
    pub region: String,
    /// Enables virtual-host addressing for `<bucket>.<domain>`; other hosts are path-style.
    #[arg(long)]
    pub domain: Option<String>,
    /// Seconds a dropped blob stays on disk before it is deleted (readers in progress keep
    /// theirs regardless).
    #[arg(long, default_value_t = 60)]
    pub deletion_grace_secs: u64,
    /// Most buckets the server holds (OSS allows 100 per account).
    #[arg(long, default_value_t = 100)]
    pub max_buckets: usize,
    /// Free bytes kept on the data volume for metadata commits and deletes; uploads that
    /// would eat into them get 507 InsufficientStorage (and work again once space is freed).
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    pub min_free_bytes: u64,
    /// Connections served at once; past it a new connection gets 503 (Retry-After) and is
    /// closed. Each connection holds at most about 1.5 MiB of buffers.
    #[arg(long, default_value_t = 512)]
    pub max_connections: usize,
    /// Seconds a response may wait for a client that stopped reading before the connection
    /// is closed (and the object's blobs are released).
    #[arg(long, default_value_t = 60)]
    pub write_timeout_secs: u64,
}

const CREDENTIALS_FILE: &str = "credentials";

/// Flags or environment first; else the pair kept in the data directory; else a new pair,
/// written there with mode 0600 and printed once.
fn settle_credentials(args: &ServeArgs) -> anyhow::Result<Credentials> {
    match (&args.access_key_id, &args.access_key_secret) {
        (Some(id), Some(secret)) => {
            return Ok(Credentials { access_key_id: id.clone(), access_key_secret: secret.clone() })
        }
        (None, None) => {}
        _ => anyhow::bail!("give both --access-key-id and --access-key-secret (or KURA_ACCESS_KEY_ID and KURA_ACCESS_KEY_SECRET), or neither"),
    }
    let path = args.data.join(CREDENTIALS_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let mut lines = text.lines();
        if let (Some(id), Some(secret)) = (lines.next(), lines.next()) {
            println!("root credentials from {}", path.display());
            return Ok(Credentials {
                access_key_id: id.trim().into(),
                access_key_secret: secret.trim().into(),
            });
        }
        anyhow::bail!("{} is not two lines (access key id, secret)", path.display());
    }
    let creds = Credentials {
        access_key_id: format!("KURA{}", hex::encode_upper(rand::random::<[u8; 8]>())),
        access_key_secret: hex::encode(rand::random::<[u8; 20]>()),
    };
    write_private(
        &path,
        &format!("{}\n{}\n", creds.access_key_id, creds.access_key_secret),
    )?;
    println!("generated root credentials (kept in {}):", path.display());
    println!("  access key id:     {}", creds.access_key_id);
    println!("  access key secret: {}", creds.access_key_secret);
    Ok(creds)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    if args.inline_max_bytes >= 512 * 1024 {
        anyhow::bail!("--inline-max-bytes must be below 524288 (one write batch)");
    }
    std::fs::create_dir_all(&args.data).with_context(|| format!("creating {}", args.data.display()))?;
    let cfg = Config {
        region: args.region.clone(),
        deletion_grace: Duration::from_secs(args.deletion_grace_secs),
        max_buckets: args.max_buckets,
        min_free_bytes: args.min_free_bytes,
        shared_file_grace: Duration::from_secs(args.shared_file_grace_secs),
        inline_max: args.inline_max_bytes,
        meta_cache_bytes: args.meta_cache_mib.saturating_mul(1024 * 1024),
        restore_delay: Duration::from_secs(args.restore_delay_secs),
        ..Config::default()
    };
    let kura = match &args.meta {
        None => {
            Kura::open_local(&args.data, cfg).map_err(|e| anyhow::anyhow!("opening {}: {e}", args.data.display()))?
        }
        Some(url) => {
            let store = crate::meta::connect(url, args.meta_pool_size).await?;
            println!("metadata in PostgreSQL at {}", store.display_url());
            if args.deletion_grace_secs < 3 {
                tracing::warn!(
                    grace_secs = args.deletion_grace_secs,
                    "with several gateways, a deletion grace under 3 s does not give readers on other gateways time to publish their leases"
                );
            }
            Kura::open(Arc::new(store), &args.data, cfg)
                .map_err(|e| anyhow::anyhow!("opening {}: {e}", args.data.display()))?
        }
    };
    let creds = settle_credentials(&args)?;
    // Files left by a crash are swept in the background: writes that start meanwhile are
    // registered as in flight, so the sweep cannot take them, and listening need not wait.
    // (With gateways sharing the directory, files that may be another's are spared until
    // --shared-file-grace-secs old.)
    let sweeper = kura.clone();
    tokio::spawn(async move {
        match sweeper.sweep_orphans(Duration::ZERO).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "removed files left by an earlier crash"),
            Err(e) => tracing::warn!(error = %e, "start-up orphan sweep failed"),
        }
    });
    kura.spawn_sweeper();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    if kura.shared() {
        println!("gateway id {}", kura.gateway_id());
    }
    println!("kura listening on http://{addr}");
    let _ = std::io::stdout().flush();
    let state = Arc::new(State {
        kura,
        creds,
        domain: args.domain.clone(),
    });
    tokio::select! {
        r = kura_server::serve(listener, state, kura_server::ServeOptions {
            max_connections: args.max_connections.max(1),
            write_timeout: Duration::from_secs(args.write_timeout_secs.max(1)),
        }) => r?,
        _ = tokio::signal::ctrl_c() => println!("shutting down"),
    }
    Ok(())
}
