//! `kura-client`: an async client for OSS-compatible stores (Kura, Alibaba Cloud OSS), and the
//! best way to move a big file: parallel parts, resume after a crash, CRC-64 verification.
//!
//! ```no_run
//! # async fn demo() -> kura_client::Result<()> {
//! use kura_client::{Client, Config, TransferOptions, Uploader};
//! let client = Client::new(Config::from_env("http://127.0.0.1:9000", "cn-hangzhou")?)?;
//! let report = Uploader::new(client, TransferOptions::default())
//!     .on_progress(|p| eprintln!("{}/{} bytes", p.bytes_done, p.bytes_total))
//!     .upload_file("big.iso".as_ref(), "my-bucket", "images/big.iso")
//!     .await?;
//! println!("{} parts, CRC-64 {}", report.parts, report.crc64);
//! # Ok(()) }
//! ```

pub mod client;
pub mod error;
pub mod transfer;

pub use client::{Addressing, Client, Config, Credentials, SignatureVersion};
pub use error::{Error, Result, ServiceError};
pub use transfer::{Checkpoint, Downloader, Progress, TransferOptions, TransferReport, Uploader};
