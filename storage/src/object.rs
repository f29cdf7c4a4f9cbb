//! Stored objects: Cap'n Proto messages in the typed envelope `Object { schemaId, version, body }`.
//!
//! A put message is read with bounded `ReaderOptions`, checked (the envelope, and the body of
//! every schema capmon knows), and stored in canonical form: a single segment with no slack, so
//! the SHA-256 content hash names the content, not one encoding of it.
use crate::error::{Result, StoreError};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use capmon_schema::storage_capnp::{bytes_body, object, text_body};
use capnp::message::{Builder, ReaderOptions};
use capnp::traits::HasTypeId;
use sha2::{Digest, Sha256};

/// A content hash: SHA-256 of the canonical message.
pub type Hash = [u8; 32];

/// The largest object a store takes: bytes of its canonical message as stored and reported
/// (segment table included).
pub const MAX_OBJECT_BYTES: usize = 4 << 20;

/// Pointers nest at most this deep in a stored object.
pub const MAX_NESTING: i32 = 16;

/// The newest version of each body schema this build reads.
pub const TEXT_VERSION: u16 = 1;
pub const BYTES_VERSION: u16 = 1;

pub fn text_schema_id() -> u64 {
    <text_body::Reader<'static> as HasTypeId>::TYPE_ID
}

pub fn bytes_schema_id() -> u64 {
    <bytes_body::Reader<'static> as HasTypeId>::TYPE_ID
}

pub fn object_schema_id() -> u64 {
    <object::Reader<'static> as HasTypeId>::TYPE_ID
}

/// Reader limits for stored objects: a message can never make the reader walk more than eight
/// times its size limit (checking reads a body a few times over) or nest deeper than `MAX_NESTING`.
pub fn reader_options() -> ReaderOptions {
    let mut o = ReaderOptions::new();
    o.traversal_limit_in_words(Some(MAX_OBJECT_BYTES / 8 * 8))
        .nesting_limit(MAX_NESTING);
    o
}

/// What `check` found in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The canonical message: what the store keeps.
    pub canonical: Vec<u8>,
    pub hash: Hash,
    pub schema_id: u64,
    pub version: u16,
}

/// Checks `msg` (a serialized message with its segment table) and returns its canonical form.
/// Refuses: a message over the size limit, one that does not parse, trailing bytes, a body
/// that is not a struct, a known body of the wrong shape or of a newer version.
pub fn check(msg: &[u8]) -> Result<Checked> {
    if msg.len() > MAX_OBJECT_BYTES + 64 {
        return Err(StoreError::TooLarge {
            what: "object",
            size: msg.len() as u64,
            limit: MAX_OBJECT_BYTES as u64,
        });
    }
    let mut rest = msg;
    let reader = capnp::serialize::read_message_from_flat_slice(&mut rest, reader_options())?;
    if !rest.is_empty() {
        return Err(StoreError::Malformed(alloc::format!(
            "{} bytes after the end of the message",
            rest.len()
        )));
    }
    let root: object::Reader = reader.get_root()?;
    let schema_id = root.get_schema_id();
    let version = root.get_version();
    let body = root.get_body();
    if body.is_null() {
        return Err(StoreError::Malformed("the object has no body".to_string()));
    }
    if schema_id == text_schema_id() {
        known_version("TextBody", version, TEXT_VERSION)?;
        let t: text_body::Reader = body.get_as()?;
        t.get_text()?
            .to_str()
            .map_err(|_| StoreError::Malformed("TextBody text is not UTF-8".to_string()))?;
    } else if schema_id == bytes_schema_id() {
        known_version("BytesBody", version, BYTES_VERSION)?;
        let b: bytes_body::Reader = body.get_as()?;
        b.get_data()?;
    } else {
        // An unknown schema: its whole tree must read within the limits.
        body.target_size()?;
    }
    let words = reader.canonicalize()?;
    let bytes = capnp::Word::words_to_bytes(&words);
    if bytes.len() + 8 > MAX_OBJECT_BYTES {
        return Err(StoreError::TooLarge {
            what: "object",
            size: bytes.len() as u64 + 8,
            limit: MAX_OBJECT_BYTES as u64,
        });
    }
    // One segment: the table is a zero segment-count-minus-one and the segment's word count.
    let mut canonical = Vec::with_capacity(8 + bytes.len());
    canonical.extend_from_slice(&0u32.to_le_bytes());
    canonical.extend_from_slice(&(words.len() as u32).to_le_bytes());
    canonical.extend_from_slice(bytes);
    let hash: Hash = Sha256::digest(&canonical).into();
    Ok(Checked {
        canonical,
        hash,
        schema_id,
        version,
    })
}

fn known_version(what: &str, found: u16, newest: u16) -> Result<()> {
    if found == 0 || found > newest {
        return Err(StoreError::Malformed(alloc::format!(
            "{} version {} (this build reads 1..={})",
            what,
            found,
            newest
        )));
    }
    Ok(())
}

/// A `TextBody` object holding `text`.
pub fn text(text: &str) -> Vec<u8> {
    let mut m = Builder::new_default();
    {
        let mut o = m.init_root::<object::Builder>();
        o.set_schema_id(text_schema_id());
        o.set_version(TEXT_VERSION);
        let mut b = o.init_body().init_as::<text_body::Builder>();
        b.set_text(text);
    }
    capnp::serialize::write_message_to_words(&m)
}

/// A `BytesBody` object holding `data`.
pub fn bytes(data: &[u8]) -> Vec<u8> {
    let mut m = Builder::new_default();
    {
        let mut o = m.init_root::<object::Builder>();
        o.set_schema_id(bytes_schema_id());
        o.set_version(BYTES_VERSION);
        let mut b = o.init_body().init_as::<bytes_body::Builder>();
        b.set_data(data);
    }
    capnp::serialize::write_message_to_words(&m)
}

/// A `BytesBody` object of `size` bytes of pattern `p` (`store put NAME --pattern P SIZE`):
/// `TooLarge` past the size limit, `NoSpace` if memory for it cannot be had (never an
/// allocation abort).
pub fn pattern(p: &capmon_block::Pattern, size: u64) -> Result<Vec<u8>> {
    if size > MAX_OBJECT_BYTES as u64 {
        return Err(StoreError::TooLarge {
            what: "object",
            size,
            limit: MAX_OBJECT_BYTES as u64,
        });
    }
    let mut data = Vec::new();
    data.try_reserve_exact(size as usize)
        .map_err(|_| StoreError::NoSpace(alloc::format!("no memory for {} bytes", size)))?;
    data.resize(size as usize, 0);
    p.fill(0, &mut data);
    Ok(bytes(&data))
}

/// A stored object, decoded for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Text(String),
    Bytes(Vec<u8>),
    /// A schema this build does not know: its size in words.
    Other {
        words: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub schema_id: u64,
    pub version: u16,
    pub body: Body,
}

/// Decodes a stored (canonical) object.
pub fn decode(msg: &[u8]) -> Result<Decoded> {
    let mut rest = msg;
    let reader = capnp::serialize::read_message_from_flat_slice(&mut rest, reader_options())?;
    let root: object::Reader = reader.get_root()?;
    let schema_id = root.get_schema_id();
    let version = root.get_version();
    let body = root.get_body();
    let body = if schema_id == text_schema_id() {
        let t: text_body::Reader = body.get_as()?;
        Body::Text(
            t.get_text()?
                .to_str()
                .map_err(|_| StoreError::Malformed("TextBody text is not UTF-8".to_string()))?
                .to_string(),
        )
    } else if schema_id == bytes_schema_id() {
        let b: bytes_body::Reader = body.get_as()?;
        Body::Bytes(b.get_data()?.to_vec())
    } else {
        Body::Other {
            words: body.target_size()?.word_count,
        }
    };
    Ok(Decoded {
        schema_id,
        version,
        body,
    })
}

/// The name of a schema id capmon knows, for listings.
pub fn schema_name(id: u64) -> &'static str {
    if id == text_schema_id() {
        "TextBody"
    } else if id == bytes_schema_id() {
        "BytesBody"
    } else {
        "unknown"
    }
}

/// Lower-case hex of a hash.
pub fn hex(h: &[u8]) -> String {
    use core::fmt::Write;
    let mut s = String::with_capacity(h.len() * 2);
    for b in h {
        let _ = write!(s, "{:02x}", b);
    }
    s
}

/// Parses 64 hex digits.
pub fn parse_hash(s: &str) -> Option<Hash> {
    if s.len() != 64 {
        return None;
    }
    let mut h = [0u8; 32];
    for (i, b) in h.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_hash_is_content() {
        let m = text("hello");
        let c = check(&m).unwrap();
        assert_eq!(c.schema_id, text_schema_id());
        assert_eq!(c.hash, <[u8; 32]>::from(Sha256::digest(&c.canonical)));
        assert_eq!(
            decode(&c.canonical).unwrap().body,
            Body::Text("hello".into())
        );
        // The same content in a different encoding (two segments, slack) gets the same hash.
        let mut b = Builder::new(capnp::message::HeapAllocator::new().first_segment_words(3));
        {
            let mut o = b.init_root::<object::Builder>();
            o.set_schema_id(text_schema_id());
            o.set_version(1);
            o.init_body()
                .init_as::<text_body::Builder>()
                .set_text("hello");
        }
        let m2 = capnp::serialize::write_message_to_words(&b);
        assert_ne!(m, m2);
        assert_eq!(check(&m2).unwrap().hash, c.hash);
        assert_ne!(check(&text("hellp")).unwrap().hash, c.hash);
    }

    #[test]
    fn refusals() {
        // Not a message at all.
        assert!(matches!(
            check(b"hello world!"),
            Err(StoreError::Malformed(_))
        ));
        assert!(matches!(check(&[]), Err(StoreError::Malformed(_))));
        // Trailing bytes.
        let mut m = text("x");
        m.extend_from_slice(&[0; 8]);
        assert!(matches!(check(&m), Err(StoreError::Malformed(_))));
        // Truncated.
        let m = text("hello there");
        assert!(matches!(
            check(&m[..m.len() - 8]),
            Err(StoreError::Malformed(_))
        ));
        // No body.
        let mut b = Builder::new_default();
        b.init_root::<object::Builder>().set_schema_id(7);
        let m = capnp::serialize::write_message_to_words(&b);
        assert!(matches!(check(&m), Err(StoreError::Malformed(_))));
        // A newer TextBody.
        let mut b = Builder::new_default();
        {
            let mut o = b.init_root::<object::Builder>();
            o.set_schema_id(text_schema_id());
            o.set_version(2);
            o.init_body().init_as::<text_body::Builder>().set_text("x");
        }
        let m = capnp::serialize::write_message_to_words(&b);
        assert!(matches!(check(&m), Err(StoreError::Malformed(_))));
        // Too large.
        let m = bytes(&alloc::vec![0x5a; MAX_OBJECT_BYTES]);
        let r = check(&m);
        assert!(
            matches!(r, Err(StoreError::TooLarge { .. })),
            "{:?}",
            r.map(|c| c.canonical.len())
        );
        // Just under the limit is fine.
        // The boundary: a BytesBody's canonical message is 48 bytes and the data padded to
        // words, so MAX - 48 bytes of data fit and one more does not.
        let m = bytes(&alloc::vec![0x5a; MAX_OBJECT_BYTES - 48]);
        assert_eq!(check(&m).unwrap().canonical.len(), MAX_OBJECT_BYTES);
        let m = bytes(&alloc::vec![0x5a; MAX_OBJECT_BYTES - 47]);
        assert!(matches!(check(&m), Err(StoreError::TooLarge { .. })));
    }

    #[test]
    fn unknown_schema_is_kept_if_it_reads() {
        let mut b = Builder::new_default();
        {
            let mut o = b.init_root::<object::Builder>();
            o.set_schema_id(0x1234);
            o.set_version(9);
            o.init_body()
                .init_as::<bytes_body::Builder>()
                .set_data(b"abc");
        }
        let m = capnp::serialize::write_message_to_words(&b);
        let c = check(&m).unwrap();
        assert_eq!(c.schema_id, 0x1234);
        assert!(matches!(
            decode(&c.canonical).unwrap().body,
            Body::Other { .. }
        ));
    }

    #[test]
    fn hashes_parse() {
        let h = check(&text("a")).unwrap().hash;
        assert_eq!(parse_hash(&hex(&h)), Some(h));
        assert_eq!(parse_hash("zz"), None);
    }
}
