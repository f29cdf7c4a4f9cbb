//! The boot package: the manifest of boot binaries and the registry checked against the ISO.
//! See README.md and docs/boot-binaries.md.
#![no_std]
extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod elf;
pub mod manifest;
#[cfg(test)]
mod tests;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use capmon_block::BlockDevice;
use capmon_iso9660::{Entry, IsoError, Kind, Volume};
use core::fmt;
use sha2::{Digest, Sha256};

pub use manifest::{Manifest, ManifestEntry, ManifestError, MANIFEST_MAX_BYTES};

/// Where the manifest and the binaries are on the ISO.
pub const MANIFEST_PATH: &str = "/boot/manifest.capnp";
pub const BINS_DIR: &str = "/boot/bins";
/// The largest chunk `read_chunk` serves at once (readBinaryChunk's bound).
pub const MAX_CHUNK: u32 = 64 << 10;

/// One binary of the registry: where it is on the ISO and what the manifest says of it.
#[derive(Debug, Clone)]
pub struct BootBinary {
    pub name: String,
    /// The first logical block of its data on the ISO.
    pub lba: u64,
    pub size: u64,
    pub sha256: [u8; 32],
    /// The last `verify`'s verdict, if it ran.
    pub verified: Option<bool>,
    entry: Entry,
}

/// Why the registry could not be made at all, or why one binary is not in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootError {
    /// The device holds no ISO 9660 volume (or a damaged one).
    Volume(IsoError),
    /// No manifest at MANIFEST_PATH, or it could not be read.
    NoManifest(IsoError),
    ManifestTooLarge(u64),
    Manifest(ManifestError),
    /// A binary the manifest names is not under BINS_DIR.
    Missing(String),
    WrongSize {
        name: String,
        manifest: u64,
        iso: u64,
    },
    NotAFile(String),
    /// Reading the binary's directory failed.
    Bins(IsoError),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::Volume(e) => write!(f, "no boot volume: {}", e),
            BootError::NoManifest(e) => write!(f, "no manifest {}: {}", MANIFEST_PATH, e),
            BootError::ManifestTooLarge(n) => write!(
                f,
                "manifest {} is {} bytes, over the limit of {}",
                MANIFEST_PATH, n, MANIFEST_MAX_BYTES
            ),
            BootError::Manifest(e) => write!(f, "manifest {}: {}", MANIFEST_PATH, e),
            BootError::Missing(n) => {
                write!(
                    f,
                    "{}/{}: named by the manifest, missing on the ISO",
                    BINS_DIR, n
                )
            }
            BootError::WrongSize {
                name,
                manifest,
                iso,
            } => write!(
                f,
                "{}/{}: {} bytes on the ISO, the manifest says {}",
                BINS_DIR, name, iso, manifest
            ),
            BootError::NotAFile(n) => write!(f, "{}/{}: not a regular file", BINS_DIR, n),
            BootError::Bins(e) => write!(f, "{}: {}", BINS_DIR, e),
        }
    }
}

/// Why `read_chunk` or `verify` refused or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkError {
    NoSuchBinary(String),
    /// `offset` is past the end of the binary.
    PastEnd {
        name: String,
        offset: u64,
        size: u64,
    },
    TooLong {
        len: u32,
    },
    Io(IsoError),
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::NoSuchBinary(n) => write!(f, "no boot binary '{}'", n),
            ChunkError::PastEnd { name, offset, size } => write!(
                f,
                "offset {} is past the end of {} ({} bytes)",
                offset, name, size
            ),
            ChunkError::TooLong { len } => write!(
                f,
                "a chunk of {} bytes is over the limit of {}",
                len, MAX_CHUNK
            ),
            ChunkError::Io(e) => write!(f, "{}", e),
        }
    }
}

/// The boot binaries of one ISO: the manifest's, checked against `/boot/bins/`.
#[derive(Debug, Clone)]
pub struct Registry {
    /// The device it was read from (`cd0`).
    pub device: String,
    pub volume: Volume,
    pub manifest_bytes: u64,
    pub init: String,
    pub binaries: Vec<BootBinary>,
    /// Each binary the manifest names that could not join, and why.
    pub problems: Vec<BootError>,
}

impl Registry {
    /// Reads the manifest on the ISO in `dev` (called `device`) and checks every binary it
    /// names under BINS_DIR. An error only when there is no registry at all; a binary that is
    /// missing or of the wrong size is a problem of an otherwise working registry.
    pub fn open(dev: &mut dyn BlockDevice, device: &str) -> Result<Registry, BootError> {
        let volume = Volume::open(dev).map_err(BootError::Volume)?;
        let m = volume
            .lookup(dev, MANIFEST_PATH)
            .map_err(BootError::NoManifest)?;
        if m.kind != Kind::File {
            return Err(BootError::NoManifest(IsoError::IsADirectory(
                MANIFEST_PATH.to_string(),
            )));
        }
        if m.size > MANIFEST_MAX_BYTES {
            return Err(BootError::ManifestTooLarge(m.size));
        }
        let mut bytes = vec![0u8; m.size as usize];
        let n = volume
            .read(dev, &m, 0, &mut bytes)
            .map_err(BootError::NoManifest)?;
        bytes.truncate(n);
        let manifest = manifest::decode(&bytes).map_err(BootError::Manifest)?;
        let mut reg = Registry {
            device: device.to_string(),
            volume,
            manifest_bytes: n as u64,
            init: manifest.init.clone(),
            binaries: Vec::new(),
            problems: Vec::new(),
        };
        let listing = match reg.volume.lookup(dev, BINS_DIR) {
            Ok(d) => reg
                .volume
                .list(dev, &d, BINS_DIR)
                .map_err(BootError::Bins)?,
            Err(IsoError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(BootError::Bins(e)),
        };
        for b in manifest.binaries {
            let Some(e) = listing.iter().find(|e| e.name == b.name) else {
                reg.problems.push(BootError::Missing(b.name));
                continue;
            };
            if e.kind != Kind::File {
                reg.problems.push(BootError::NotAFile(b.name));
            } else if e.size != b.size {
                reg.problems.push(BootError::WrongSize {
                    name: b.name,
                    manifest: b.size,
                    iso: e.size,
                });
            } else {
                reg.binaries.push(BootBinary {
                    lba: e.lba(),
                    size: e.size,
                    sha256: b.sha256,
                    verified: None,
                    entry: e.clone(),
                    name: b.name,
                });
            }
        }
        Ok(reg)
    }

    pub fn get(&self, name: &str) -> Option<&BootBinary> {
        self.binaries.iter().find(|b| b.name == name)
    }

    /// readBinaryChunk: up to `len` bytes (at most MAX_CHUNK) of binary `name` from
    /// `offset`, read from the ISO now; fewer at the end of the binary.
    pub fn read_chunk(
        &self,
        dev: &mut dyn BlockDevice,
        name: &str,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, ChunkError> {
        let b = self
            .get(name)
            .ok_or_else(|| ChunkError::NoSuchBinary(name.to_string()))?;
        if len > MAX_CHUNK {
            return Err(ChunkError::TooLong { len });
        }
        if offset > b.size {
            return Err(ChunkError::PastEnd {
                name: name.to_string(),
                offset,
                size: b.size,
            });
        }
        let n = (b.size - offset).min(u64::from(len)) as usize;
        let mut out = vec![0u8; n];
        let got = self
            .volume
            .read(dev, &b.entry, offset, &mut out)
            .map_err(ChunkError::Io)?;
        out.truncate(got);
        Ok(out)
    }

    /// Hashes binary `name` from the ISO in MAX_CHUNK pieces and records whether it matches
    /// the manifest; the digest read.
    pub fn verify(
        &mut self,
        dev: &mut dyn BlockDevice,
        name: &str,
    ) -> Result<[u8; 32], ChunkError> {
        let size = self
            .get(name)
            .ok_or_else(|| ChunkError::NoSuchBinary(name.to_string()))?
            .size;
        let mut h = Sha256::new();
        let mut off = 0u64;
        while off < size {
            let c = self.read_chunk(dev, name, off, MAX_CHUNK)?;
            if c.is_empty() {
                return Err(ChunkError::Io(IsoError::BadPath(format!(
                    "{} ended at {} of {} bytes",
                    name, off, size
                ))));
            }
            h.update(&c);
            off += c.len() as u64;
        }
        let digest: [u8; 32] = h.finalize().into();
        if let Some(b) = self.binaries.iter_mut().find(|b| b.name == name) {
            b.verified = Some(digest == b.sha256);
        }
        Ok(digest)
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = fmt::Write::write_fmt(&mut s, format_args!("{:02x}", b));
    }
    s
}
