//! The manifest round trip and its refusals, and the registry against ISOs xorriso makes.
use crate::manifest::*;
use crate::*;
use capmon_block::RamDisk;
use std::path::PathBuf;
use std::process::Command;
use std::string::ToString;
use std::{format, fs};

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn entry(name: &str, data: &[u8]) -> ManifestEntry {
    ManifestEntry {
        name: name.to_string(),
        size: data.len() as u64,
        sha256: sha(data),
    }
}

fn bins() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("hello", (0..12_345u32).map(|i| (i * 13) as u8).collect()),
        ("sha", (0..200_000u32).map(|i| (i * 7 + 1) as u8).collect()),
        ("empty", Vec::new()),
    ]
}

fn manifest_of(files: &[(&str, Vec<u8>)], init: &str) -> Manifest {
    Manifest {
        binaries: files.iter().map(|(n, d)| entry(n, d)).collect(),
        init: init.to_string(),
    }
}

#[test]
fn manifests_round_trip_canonically_and_bad_ones_are_named() {
    let m = manifest_of(&bins(), "hello");
    let bytes = encode(&m);
    assert_eq!(decode(&bytes).unwrap(), m);
    assert_eq!(encode(&decode(&bytes).unwrap()), bytes, "canonical");
    assert!((bytes.len() as u64) < MANIFEST_MAX_BYTES);

    let bad = |f: &dyn Fn(&mut Manifest)| {
        let mut m = manifest_of(&bins(), "hello");
        f(&mut m);
        decode(&encode(&m))
    };
    assert!(
        matches!(bad(&|m| m.binaries[1].name = "a/b".into()), Err(ManifestError::BadName(n)) if n == "a/b")
    );
    assert!(matches!(
        bad(&|m| m.binaries[1].name = "..".into()),
        Err(ManifestError::BadName(_))
    ));
    assert!(matches!(
        bad(&|m| m.binaries[1].name = String::new()),
        Err(ManifestError::BadName(_))
    ));
    assert!(
        matches!(bad(&|m| m.binaries[2].name = "hello".into()), Err(ManifestError::Duplicate(n)) if n == "hello")
    );
    assert!(
        matches!(bad(&|m| m.init = "nope".into()), Err(ManifestError::NoInit(n)) if n == "nope")
    );
    assert!(matches!(
        bad(&|m| m.binaries[0].size = MAX_BINARY_BYTES + 1),
        Err(ManifestError::TooLarge { .. })
    ));
    assert!(decode(&encode(&Manifest {
        binaries: Vec::new(),
        init: String::new()
    }))
    .is_ok());
    // Not a message at all; a message of another version; a digest of the wrong length.
    assert!(matches!(
        decode(b"\x00\x00\x00"),
        Err(ManifestError::Message(_))
    ));
    assert!(matches!(decode(&[0u8; 64]), Err(ManifestError::Message(_))));
    let mut v0 = capnp::message::Builder::new_default();
    v0.init_root::<capmon_schema::boot_capnp::boot_package::Builder>()
        .set_version(0);
    assert_eq!(
        decode(&capnp::serialize::write_message_to_words(&v0)),
        Err(ManifestError::Version(0))
    );
    let mut b = capnp::message::Builder::new_default();
    {
        let mut p = b.init_root::<capmon_schema::boot_capnp::boot_package::Builder>();
        p.set_version(VERSION);
        let mut l = p.init_binaries(1);
        l.reborrow().get(0).set_name("x");
        l.reborrow().get(0).set_sha256(&[1, 2, 3]);
    }
    let words = capnp::serialize::write_message_to_words(&b);
    assert_eq!(
        decode(&words),
        Err(ManifestError::BadDigest {
            name: "x".into(),
            len: 3
        })
    );
    assert!(!ManifestError::TooMany(300).to_string().is_empty());
}

/// An ISO of `files` under /boot/bins and `manifest` at /boot/manifest.capnp, made by xorriso.
fn iso(tag: &str, files: &[(&str, Vec<u8>)], manifest: &[u8]) -> Vec<u8> {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("capmon-bootpkg-{}-{}", tag, std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let bins = dir.join("tree/boot/bins");
    fs::create_dir_all(&bins).unwrap();
    for (n, d) in files {
        fs::write(bins.join(n), d).unwrap();
    }
    fs::write(dir.join("tree/boot/manifest.capnp"), manifest).unwrap();
    let out = dir.join("t.iso");
    let st = Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-R", "-o"])
        .arg(&out)
        .arg(dir.join("tree"))
        .status()
        .unwrap();
    assert!(st.success());
    let img = fs::read(&out).unwrap();
    let _ = fs::remove_dir_all(&dir);
    img
}

fn cd(img: Vec<u8>) -> RamDisk {
    let mut d = RamDisk::from_image(img, 2048).unwrap();
    d.set_read_only(true);
    d
}

#[test]
fn the_registry_holds_what_the_manifest_names_and_serves_chunks_from_the_iso() {
    let files = bins();
    let img = iso("good", &files, &encode(&manifest_of(&files, "hello")));
    let mut d = cd(img);
    let mut r = Registry::open(&mut d, "cd0").unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.init, "hello");
    let names: Vec<&str> = r.binaries.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["hello", "sha", "empty"]);
    let sha_data = &files[1].1;
    let b = r.get("sha").unwrap();
    assert_eq!((b.size, b.sha256), (sha_data.len() as u64, sha(sha_data)));
    assert!(b.lba > 16);
    // Chunks: in the middle, at the end (short), at the very end (empty), refused past it.
    assert_eq!(
        r.read_chunk(&mut d, "sha", 100_000, 5000).unwrap(),
        sha_data[100_000..105_000]
    );
    assert_eq!(
        r.read_chunk(&mut d, "sha", 199_990, 100).unwrap(),
        sha_data[199_990..]
    );
    assert!(r
        .read_chunk(&mut d, "sha", 200_000, 100)
        .unwrap()
        .is_empty());
    assert!(matches!(
        r.read_chunk(&mut d, "sha", 200_001, 1),
        Err(ChunkError::PastEnd { .. })
    ));
    assert_eq!(
        r.read_chunk(&mut d, "sha", 0, MAX_CHUNK + 1),
        Err(ChunkError::TooLong { len: MAX_CHUNK + 1 })
    );
    assert_eq!(
        r.read_chunk(&mut d, "nope", 0, 1),
        Err(ChunkError::NoSuchBinary("nope".into()))
    );
    for (n, data) in &files {
        assert_eq!(r.verify(&mut d, n).unwrap(), sha(data));
        assert_eq!(r.get(n).unwrap().verified, Some(true));
    }
}

#[test]
fn missing_and_mis_sized_binaries_are_named_problems_and_the_rest_still_serve() {
    let files = bins();
    let mut m = manifest_of(&files, "");
    m.binaries.push(entry("ghost", b"never written"));
    m.binaries[0].size += 1;
    m.binaries[1].sha256[0] ^= 1;
    let img = iso("bad", &files, &encode(&m));
    let mut d = cd(img);
    let mut r = Registry::open(&mut d, "cd0").unwrap();
    assert_eq!(
        r.problems,
        [
            BootError::WrongSize {
                name: "hello".into(),
                manifest: 12_346,
                iso: 12_345
            },
            BootError::Missing("ghost".into())
        ]
    );
    assert_eq!(
        r.problems[1].to_string(),
        "/boot/bins/ghost: named by the manifest, missing on the ISO"
    );
    assert_eq!(
        r.problems[0].to_string(),
        "/boot/bins/hello: 12345 bytes on the ISO, the manifest says 12346"
    );
    let names: Vec<&str> = r.binaries.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["sha", "empty"]);
    // A digest that does not match is found by verify, not at open.
    assert_ne!(
        r.verify(&mut d, "sha").unwrap(),
        r.get("sha").unwrap().sha256
    );
    assert_eq!(r.get("sha").unwrap().verified, Some(false));
}

#[test]
fn without_a_volume_or_a_manifest_there_is_no_registry() {
    let mut blank = RamDisk::new(64 * 2048, 2048).unwrap();
    assert!(matches!(
        Registry::open(&mut blank, "cd0"),
        Err(BootError::Volume(IsoError::NotIso))
    ));
    let files = bins();
    // No manifest file: an ISO of the binaries alone.
    let dir = std::env::temp_dir().join(format!("capmon-bootpkg-none-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("tree/boot/bins")).unwrap();
    fs::write(dir.join("tree/boot/bins/hello"), &files[0].1).unwrap();
    let out = dir.join("t.iso");
    assert!(Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-R", "-o"])
        .arg(&out)
        .arg(dir.join("tree"))
        .status()
        .unwrap()
        .success());
    let mut d = cd(fs::read(&out).unwrap());
    let _ = fs::remove_dir_all(&dir);
    let e = Registry::open(&mut d, "cd0").unwrap_err();
    assert!(
        matches!(e, BootError::NoManifest(IsoError::NotFound(_))),
        "{:?}",
        e
    );
    // A manifest that is not one.
    let mut d = cd(iso(
        "garbage",
        &files,
        b"this is not a capnp message at all",
    ));
    assert!(matches!(
        Registry::open(&mut d, "cd0"),
        Err(BootError::Manifest(ManifestError::Message(_)))
    ));
    // A manifest over the limit is not even read.
    let mut d = cd(iso(
        "huge",
        &files,
        &vec![0u8; MANIFEST_MAX_BYTES as usize + 1],
    ));
    assert_eq!(
        Registry::open(&mut d, "cd0").unwrap_err(),
        BootError::ManifestTooLarge(MANIFEST_MAX_BYTES + 1)
    );
}

/// Seeds for the `boot_manifest` fuzz target (`CAPMON_FUZZ_SEEDS=DIR`).
#[test]
fn write_fuzz_seeds() {
    let Some(dir) = std::env::var_os("CAPMON_FUZZ_SEEDS") else {
        return;
    };
    let dir = PathBuf::from(dir);
    fs::write(
        dir.join("three.capnp"),
        encode(&manifest_of(&bins(), "hello")),
    )
    .unwrap();
    fs::write(
        dir.join("empty.capnp"),
        encode(&Manifest {
            binaries: Vec::new(),
            init: String::new(),
        }),
    )
    .unwrap();
}

mod elf_tests {
    use crate::elf::*;
    use std::string::ToString;
    use std::vec;
    use std::vec::Vec;

    /// A 64-bit x86-64 ELF: header, program headers `(type, flags, offset, vaddr, filesz,
    /// memsz)`, padded to `size` bytes.
    pub fn mk(
        e_type: u16,
        machine: u16,
        entry: u64,
        phs: &[(u32, u32, u64, u64, u64, u64)],
        size: usize,
    ) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
        b.extend_from_slice(&e_type.to_le_bytes());
        b.extend_from_slice(&machine.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&entry.to_le_bytes());
        b.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
        b.extend_from_slice(&0x1_0000_0000u64.to_le_bytes()); // e_shoff: far past the head
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&64u16.to_le_bytes());
        b.extend_from_slice(&56u16.to_le_bytes());
        b.extend_from_slice(&(phs.len() as u16).to_le_bytes());
        b.extend_from_slice(&64u16.to_le_bytes());
        b.extend_from_slice(&7u16.to_le_bytes()); // e_shnum: sections that are not there
        b.extend_from_slice(&0u16.to_le_bytes());
        for (t, f, off, va, fs, ms) in phs {
            b.extend_from_slice(&t.to_le_bytes());
            b.extend_from_slice(&f.to_le_bytes());
            for v in [*off, *va, *va, *fs, *ms, 4096] {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        b.resize(size, 0);
        b
    }

    const RX: u32 = 5;
    const RW: u32 = 6;

    fn good() -> Vec<u8> {
        mk(
            2,
            62,
            0x401010,
            &[
                (1, RX, 0x1000, 0x401000, 0x800, 0x800),
                (1, RW, 0x2000, 0x402000, 0x100, 0x3000),
            ],
            0x3000,
        )
    }

    #[test]
    fn a_static_executable_is_accepted_with_its_segments() {
        let img = validate(&good(), 0x3000).unwrap();
        assert_eq!(img.entry, 0x401010);
        assert_eq!(img.segments.len(), 2);
        assert!(img.segments[0].exec && !img.segments[0].write);
        assert_eq!(img.segments[1].pages(), (0x402000, 0x405000));
        assert_eq!(img.memory(), 0x4000);
    }

    #[test]
    fn every_rule_refuses_by_name() {
        let file = 0x3000;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                b"MZ not an elf at all, long enough to be a header, really it is padded out...."
                    .to_vec(),
                "no ELF magic",
            ),
            (
                {
                    let mut b = good();
                    b[4] = 1;
                    b
                },
                "not a 64-bit little-endian ELF",
            ),
            (
                mk(
                    3,
                    62,
                    0x401010,
                    &[(1, RX, 0x1000, 0x401000, 0x800, 0x800)],
                    file,
                ),
                "ELF type 3",
            ),
            (
                mk(
                    2,
                    3,
                    0x401010,
                    &[(1, RX, 0x1000, 0x401000, 0x800, 0x800)],
                    file,
                ),
                "machine 3",
            ),
            (
                mk(
                    2,
                    62,
                    0x401010,
                    &[
                        (3, 4, 0x1000, 0x401000, 0x10, 0x10),
                        (1, RX, 0x1000, 0x401000, 0x800, 0x800),
                    ],
                    file,
                ),
                "dynamically linked",
            ),
            (mk(2, 62, 0x401010, &[], file), "no loadable segment"),
            (
                mk(
                    2,
                    62,
                    0x1010,
                    &[(1, RX, 0x1000, 0x1000, 0x800, 0x800)],
                    file,
                ),
                "outside the user range",
            ),
            (
                mk(
                    2,
                    62,
                    0x401010,
                    &[(1, RX, 0x1000, 0x7f_0000_0000 - 0x800, 0x800, 0x1000)],
                    file,
                ),
                "outside the user range",
            ),
            (
                mk(
                    2,
                    62,
                    0x401010,
                    &[(1, RX, 0x1000, 0x401000, 0x900, 0x800)],
                    file,
                ),
                "2304 bytes in the file but 2048 in memory",
            ),
            (
                mk(
                    2,
                    62,
                    0x401010,
                    &[(1, RX, 0x2800, 0x401000, 0x1000, 0x1000)],
                    file,
                ),
                "past the end of the file",
            ),
            (
                mk(
                    2,
                    62,
                    0x401010,
                    &[(1, RX, 0x1000, 0x401800, 0x800, 0x800)],
                    file,
                ),
                "differ within a page",
            ),
            (
                mk(
                    2,
                    62,
                    0x401010,
                    &[(1, 7, 0x1000, 0x401000, 0x800, 0x800)],
                    file,
                ),
                "both writable and executable",
            ),
            (
                mk(
                    2,
                    62,
                    0x401010,
                    &[
                        (1, RX, 0x1000, 0x401000, 0x800, 0x800),
                        (1, RW, 0x1000, 0x401000, 0x10, 0x10),
                    ],
                    file,
                ),
                "share a page",
            ),
            (
                mk(
                    2,
                    62,
                    0x402010,
                    &[
                        (1, RX, 0x1000, 0x401000, 0x800, 0x800),
                        (1, RW, 0x2000, 0x402000, 0x100, 0x100),
                    ],
                    file,
                ),
                "entry point 0x402010",
            ),
            (
                mk(
                    2,
                    62,
                    0x401010,
                    &[
                        (1, RX, 0x1000, 0x401000, 0x800, 0x800),
                        (1, RW, 0x2000, 0x402000, 0x100, 64 << 20),
                    ],
                    file,
                ),
                "bytes of segments",
            ),
        ];
        for (bytes, says) in cases {
            let e = validate(&bytes, file as u64).unwrap_err();
            assert!(e.to_string().contains(says), "{}: {}", says, e);
        }
        // Seventeen loadable segments.
        let phs: Vec<_> = (0..17u64)
            .map(|i| (1, 4, 0x1000, 0x401000 + i * 0x1000, 0x10, 0x10))
            .collect();
        assert!(matches!(
            validate(&mk(2, 62, 0x401010, &phs, file), file as u64),
            Err(ElfError::TooManySegments(_))
        ));
        // Truncated headers.
        assert!(matches!(
            validate(&good()[..100], 0x3000),
            Err(ElfError::Parse(_))
        ));
    }
}
