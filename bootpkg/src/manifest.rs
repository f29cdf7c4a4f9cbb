//! The `BootPackage` manifest (schema/boot.capnp): decoded with bounds and checked, and
//! encoded in the canonical form mkmanifest writes.
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use capmon_schema::boot_capnp::boot_package;
use core::fmt;

/// The largest manifest the kernel reads (the manifest is names, sizes and digests only: about
/// 80 bytes a binary, so this holds MAX_BINARIES with room to spare).
pub const MANIFEST_MAX_BYTES: u64 = 64 << 10;
pub const MAX_BINARIES: usize = 256;
pub const MAX_NAME_BYTES: usize = 64;
/// The largest binary a manifest may name.
pub const MAX_BINARY_BYTES: u64 = 1 << 30;
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    pub name: String,
    pub size: u64,
    pub sha256: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub binaries: Vec<ManifestEntry>,
    pub init: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestError {
    /// Not a Cap'n Proto message, or over the reader's limits.
    Message(String),
    Version(u32),
    TooMany(usize),
    BadName(String),
    Duplicate(String),
    BadDigest {
        name: String,
        len: usize,
    },
    TooLarge {
        name: String,
        size: u64,
    },
    /// `init` names no binary of the manifest.
    NoInit(String),
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestError::Message(m) => write!(f, "not a BootPackage message: {}", m),
            ManifestError::Version(v) => write!(f, "version {} (capmon reads {})", v, VERSION),
            ManifestError::TooMany(n) => {
                write!(f, "{} binaries (at most {})", n, MAX_BINARIES)
            }
            ManifestError::BadName(n) => write!(
                f,
                "the name {:?} (1 to {} bytes of A-Z a-z 0-9 . _ -, not . or ..)",
                n, MAX_NAME_BYTES
            ),
            ManifestError::Duplicate(n) => write!(f, "'{}' is named twice", n),
            ManifestError::BadDigest { name, len } => {
                write!(f, "{}: a SHA-256 of {} bytes, not 32", name, len)
            }
            ManifestError::TooLarge { name, size } => write!(
                f,
                "{}: {} bytes, over the limit of {}",
                name, size, MAX_BINARY_BYTES
            ),
            ManifestError::NoInit(n) => write!(f, "init '{}' is not one of its binaries", n),
        }
    }
}

/// A binary's name: what may be a file name under /boot/bins on any ISO 9660 reader.
pub fn valid_name(n: &str) -> bool {
    (1..=MAX_NAME_BYTES).contains(&n.len())
        && n != "."
        && n != ".."
        && n.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

fn options() -> capnp::message::ReaderOptions {
    let mut o = capnp::message::ReaderOptions::new();
    o.traversal_limit_in_words(Some(MANIFEST_MAX_BYTES as usize / 8 * 4))
        .nesting_limit(8);
    o
}

pub fn decode(mut bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let msg = |e: capnp::Error| ManifestError::Message(e.to_string());
    let r = capnp::serialize::read_message_from_flat_slice(&mut bytes, options()).map_err(msg)?;
    let p: boot_package::Reader = r.get_root().map_err(msg)?;
    if p.get_version() != VERSION {
        return Err(ManifestError::Version(p.get_version()));
    }
    let list = p.get_binaries().map_err(msg)?;
    if list.len() as usize > MAX_BINARIES {
        return Err(ManifestError::TooMany(list.len() as usize));
    }
    let mut binaries: Vec<ManifestEntry> = Vec::new();
    for b in list.iter() {
        let name = b
            .get_name()
            .map_err(msg)?
            .to_str()
            .map_err(|_| ManifestError::BadName(String::from("(not UTF-8)")))?
            .to_string();
        if !valid_name(&name) {
            return Err(ManifestError::BadName(name));
        }
        if binaries.iter().any(|e| e.name == name) {
            return Err(ManifestError::Duplicate(name));
        }
        let d = b.get_sha256().map_err(msg)?;
        let sha256: [u8; 32] = d.try_into().map_err(|_| ManifestError::BadDigest {
            name: name.clone(),
            len: d.len(),
        })?;
        if b.get_size() > MAX_BINARY_BYTES {
            return Err(ManifestError::TooLarge {
                name,
                size: b.get_size(),
            });
        }
        binaries.push(ManifestEntry {
            name,
            size: b.get_size(),
            sha256,
        });
    }
    let init = p
        .get_init()
        .map_err(msg)?
        .to_str()
        .map_err(|_| ManifestError::NoInit(String::from("(not UTF-8)")))?
        .to_string();
    if !init.is_empty() && !binaries.iter().any(|b| b.name == init) {
        return Err(ManifestError::NoInit(init));
    }
    Ok(Manifest { binaries, init })
}

/// The manifest as one canonical message (what mkmanifest writes). The caller checks names
/// with `valid_name`; `decode` of the result gives `m` back.
pub fn encode(m: &Manifest) -> Vec<u8> {
    let mut b = capnp::message::Builder::new_default();
    {
        let mut p = b.init_root::<boot_package::Builder>();
        p.set_version(VERSION);
        p.set_init(m.init.as_str());
        let mut list = p.init_binaries(m.binaries.len() as u32);
        for (i, e) in m.binaries.iter().enumerate() {
            let mut x = list.reborrow().get(i as u32);
            x.set_name(e.name.as_str());
            x.set_size(e.size);
            x.set_sha256(&e.sha256);
        }
    }
    let canonical = b
        .get_root_as_reader::<boot_package::Reader>()
        .and_then(|r| {
            let mut c = capnp::message::Builder::new_default();
            c.set_root_canonical(r)?;
            Ok(capnp::serialize::write_message_to_words(&c))
        });
    canonical.unwrap_or_else(|_| capnp::serialize::write_message_to_words(&b))
}

/// A line per binary for `mkmanifest --print`: `NAME SIZE SHA256`.
pub fn describe(m: &Manifest) -> Vec<String> {
    m.binaries
        .iter()
        .map(|b| format!("{} {} {}", b.name, b.size, crate::hex(&b.sha256)))
        .collect()
}
