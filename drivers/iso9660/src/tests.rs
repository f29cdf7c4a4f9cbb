//! The reader against images `xorriso` makes from a tree of files, and against those images
//! damaged on purpose. `xorriso` is also the oracle for listings (`-find`).
use crate::*;
use capmon_block::RamDisk;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::string::ToString;
use std::{format, fs};

/// A scratch directory for one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p =
            std::env::temp_dir().join(format!("capmon-iso9660-{}-{}", name, std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// splitmix64 bytes: file contents nobody could mistake for another file's.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The tree every image is made of: files at the sizes around block edges, a long and a mixed
/// case name, a deep directory chain, an empty directory, a symbolic link.
fn make_tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let sizes = [0usize, 1, 511, 2047, 2048, 2049, 4096, 100_000, 300_001];
    for (i, n) in sizes.iter().enumerate() {
        files.push((format!("sizes/f{}-{}.bin", i, n), pattern(i as u64, *n)));
    }
    files.push((
        String::from("Mixed Case And A Rather Long Name For A File That Goes On.txt"),
        b"long\n".to_vec(),
    ));
    files.push((String::from("boot/bins/hello"), pattern(100, 12_345)));
    files.push((String::from("boot/bins/sha"), pattern(101, 23_456)));
    let mut deep = String::from("deep");
    for l in 0..10 {
        deep.push_str(&format!("/d{}", l));
    }
    files.push((format!("{}/bottom.txt", deep), b"the bottom\n".to_vec()));
    for (p, data) in &files {
        let full = root.join(p);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(full, data).unwrap();
    }
    fs::create_dir_all(root.join("empty")).unwrap();
    std::os::unix::fs::symlink("../boot/bins/hello", root.join("sizes/link")).unwrap();
    files
}

/// An image of a fresh tree, with xorriso's mkisofs options `opts` (`-R`, `-J`, ...).
fn image(s: &Scratch, opts: &[&str]) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let tree = s.0.join("tree");
    let _ = fs::remove_dir_all(&tree);
    let files = make_tree(&tree);
    let out = s.0.join("out.iso");
    let st = Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-V", "CAPMON_TEST"])
        .args(opts)
        .arg("-o")
        .arg(&out)
        .arg(&tree)
        .status()
        .expect("xorriso (scripts/setup.sh installs it)");
    assert!(st.success());
    (fs::read(&out).unwrap(), files)
}

/// xorriso's own listing of an image: every path under `/` with its type letter.
fn xorriso_find(s: &Scratch, img: &[u8]) -> Vec<String> {
    let p = s.0.join("probe.iso");
    fs::write(&p, img).unwrap();
    let out = Command::new("xorriso")
        .args(["-abort_on", "FATAL", "-indev"])
        .arg(&p)
        .args(["-find", "/", "-exec", "lsdl", "--"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            // `drwxr-xr-x  1 0 0  2048 Dec  4 02:50 '/boot'`, links `'/a' -> '../b'`
            let q = l.find('\'')?;
            let kind = l.chars().next()?;
            let name = l[q + 1..].split('\'').next()?;
            (name != "/").then(|| format!("{} {}", kind, name))
        })
        .collect();
    v.sort();
    v
}

fn disk(img: &[u8], sector: u32) -> RamDisk {
    let mut d = RamDisk::from_image(img.to_vec(), sector).unwrap();
    d.set_read_only(true);
    d
}

fn our_listing(v: &Volume, d: &mut RamDisk) -> Vec<String> {
    let mut out = Vec::new();
    v.walk(d, &mut |p, e| {
        let k = match e.kind {
            Kind::Dir => 'd',
            Kind::File => '-',
            Kind::Symlink => 'l',
        };
        out.push(format!("{} {}", k, p));
        true
    })
    .unwrap();
    out.sort();
    out
}

fn read_all(v: &Volume, d: &mut RamDisk, e: &Entry) -> Vec<u8> {
    let mut buf = vec![0u8; e.size as usize];
    assert_eq!(v.read(d, e, 0, &mut buf).unwrap(), buf.len());
    buf
}

#[test]
fn rock_ridge_images_list_as_xorriso_lists_them_and_read_back_every_byte() {
    let s = Scratch::new("rr");
    let (img, files) = image(&s, &["-R", "-J"]);
    let want = xorriso_find(&s, &img);
    assert!(want.len() > 20, "{:?}", want);
    for sector in [512, 2048] {
        let mut d = disk(&img, sector);
        let v = Volume::open(&mut d).unwrap();
        assert_eq!(v.names, Names::RockRidge { skip: 0 });
        assert!(v.has_joliet);
        assert_eq!((v.volume_id.as_str(), v.block), ("CAPMON_TEST", 2048));
        assert_eq!(v.bytes(), img.len() as u64);
        assert_eq!(our_listing(&v, &mut d), want);
        for (p, data) in &files {
            let e = v.lookup(&mut d, p).unwrap();
            assert_eq!((e.kind, e.size), (Kind::File, data.len() as u64), "{}", p);
            assert_eq!(read_all(&v, &mut d, &e), *data, "{}", p);
            // Reads at odd offsets and past the end.
            if data.len() > 3000 {
                let mut b = vec![0u8; 1000];
                assert_eq!(v.read(&mut d, &e, 2047, &mut b).unwrap(), 1000);
                assert_eq!(b[..], data[2047..3047]);
                let tail = data.len() as u64 - 10;
                assert_eq!(v.read(&mut d, &e, tail, &mut b).unwrap(), 10);
                assert_eq!(b[..10], data[data.len() - 10..]);
                assert_eq!(
                    v.read(&mut d, &e, data.len() as u64 + 5, &mut b).unwrap(),
                    0
                );
            }
        }
        let l = v.lookup(&mut d, "/sizes/link").unwrap();
        assert_eq!(
            (l.kind, l.target.as_deref()),
            (Kind::Symlink, Some("../boot/bins/hello"))
        );
        assert_eq!(l.mode.map(|m| m & susp::S_IFMT), Some(susp::S_IFLNK));
        let bins = v.lookup(&mut d, "/boot/bins/").unwrap();
        let names: Vec<String> = v
            .list(&mut d, &bins, "/boot/bins")
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["hello", "sha"]);
        let empty = v.lookup(&mut d, "empty").unwrap();
        assert!(v.list(&mut d, &empty, "/empty").unwrap().is_empty());
        // Names are exact under Rock Ridge.
        assert_eq!(
            v.lookup(&mut d, "BOOT"),
            Err(IsoError::NotFound(String::from("/BOOT")))
        );
        assert_eq!(
            v.lookup(&mut d, "boot/bins/hello/x"),
            Err(IsoError::NotADirectory(String::from("/boot/bins/hello")))
        );
        assert!(matches!(
            v.read(&mut d, &bins, 0, &mut [0u8; 4]),
            Err(IsoError::IsADirectory(_))
        ));
    }
}

#[test]
fn joliet_and_plain_volumes_have_their_own_names() {
    let s = Scratch::new("names");
    let (img, files) = image(&s, &["--norock", "-J", "-joliet-long"]);
    let mut d = disk(&img, 2048);
    let v = Volume::open(&mut d).unwrap();
    assert_eq!(v.names, Names::Joliet);
    let e = v.lookup(&mut d, "boot/bins/hello").unwrap();
    assert_eq!(
        read_all(&v, &mut d, &e),
        files.iter().find(|f| f.0 == "boot/bins/hello").unwrap().1
    );
    let long = v
        .lookup(
            &mut d,
            "Mixed Case And A Rather Long Name For A File That Goes On.txt",
        )
        .unwrap();
    assert_eq!(read_all(&v, &mut d, &long), b"long\n");

    let (img, files) = image(&s, &["--norock"]);
    let mut d = disk(&img, 512);
    let v = Volume::open(&mut d).unwrap();
    assert_eq!((v.names, v.has_joliet), (Names::Iso, false));
    // Plain names are upper case, 8.3 at level 1, and matched without regard to case.
    let e = v.lookup(&mut d, "boot/bins/hello").unwrap();
    assert_eq!(e.name, "HELLO");
    assert_eq!(
        read_all(&v, &mut d, &e),
        files.iter().find(|f| f.0 == "boot/bins/hello").unwrap().1
    );
    let mut n = 0;
    v.walk(&mut d, &mut |p, _| {
        assert!(!p.contains(';'), "{}", p);
        n += 1;
        true
    })
    .unwrap();
    assert!(n > 20);
}

#[test]
fn rock_ridge_relocated_directories_are_found_where_they_belong() {
    let s = Scratch::new("reloc");
    let tree = s.0.join("tree");
    let mut deep = tree.clone();
    for l in 0..12 {
        deep = deep.join(format!("level{}", l));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("x"), b"deep down\n").unwrap();
    let out = s.0.join("out.iso");
    // deep_paths_off: directories below level 8 move to /rr_moved, a CL entry where they were.
    let st = Command::new("xorriso")
        .args([
            "-abort_on",
            "FAILURE",
            "-compliance",
            "deep_paths_off",
            "-rr_reloc_dir",
            "rr_moved",
            "-outdev",
        ])
        .arg(&out)
        .arg("-map")
        .arg(&tree)
        .args(["/", "-commit"])
        .output()
        .unwrap();
    assert!(st.status.success());
    let img = fs::read(&out).unwrap();
    assert!(
        img.windows(4).any(|w| w == b"CL\x0c\x01"),
        "xorriso relocated nothing"
    );
    let want = xorriso_find(&s, &img);
    let mut d = disk(&img, 2048);
    let v = Volume::open(&mut d).unwrap();
    assert_eq!(our_listing(&v, &mut d), want);
    let p: Vec<String> = (0..12).map(|l| format!("level{}", l)).collect();
    let e = v.lookup(&mut d, &format!("{}/x", p.join("/"))).unwrap();
    assert_eq!(read_all(&v, &mut d, &e), b"deep down\n");
}

/// The block of `img` where the record named `name` (ISO identifier bytes) starts, and its
/// offset there: the first match of the identifier preceded by its length.
fn find_record(img: &[u8], ident: &[u8]) -> usize {
    let mut pat = vec![ident.len() as u8];
    pat.extend_from_slice(ident);
    let at = img
        .windows(pat.len())
        .enumerate()
        .find(|(i, w)| {
            *w == &pat[..] && *i >= 18 * 2048 && img[*i - 32] as usize >= 33 + ident.len()
        })
        .map(|(i, _)| i)
        .expect("record");
    at - 32
}

fn set_both32(img: &mut [u8], at: usize, v: u32) {
    img[at..at + 4].copy_from_slice(&v.to_le_bytes());
    img[at + 4..at + 8].copy_from_slice(&v.to_be_bytes());
}

#[test]
fn damaged_descriptors_are_named_errors() {
    let s = Scratch::new("pvd");
    let (img, _) = image(&s, &["-R"]);
    const PVD: usize = 16 * 2048;
    let pvd = PVD;
    let open = |img: &[u8]| Volume::open(&mut disk(img, 2048)).map(|_| ());

    let mut bad = img.clone();
    bad[pvd + 1..pvd + 6].copy_from_slice(b"CD002");
    assert_eq!(open(&bad), Err(IsoError::NotIso));
    assert_eq!(open(&vec![0u8; 40 * 2048]), Err(IsoError::NotIso));
    assert_eq!(open(&vec![0u8; 2048]), Err(IsoError::NotIso));

    type Damage = fn(&mut [u8]);
    let cases: [(&str, Damage, &str); 6] = [
        (
            "block size halves",
            |b| b[PVD + 130] ^= 0xff,
            "logical block size: its two byte orders differ",
        ),
        (
            "block size",
            |b| {
                b[PVD + 128..PVD + 132].copy_from_slice(&[0, 3, 3, 0]);
            },
            "logical block size 768",
        ),
        (
            "volume size",
            |b| set_both32(b, PVD + 80, 1 << 30),
            "is larger than the device",
        ),
        (
            "root record length",
            |b| b[PVD + 156] = 33,
            "the root directory record is malformed",
        ),
        (
            "root not a directory",
            |b| b[PVD + 156 + 25] = 0,
            "is not a directory",
        ),
        (
            "root outside",
            |b| set_both32(b, PVD + 156 + 2, 0x00ff_0000),
            "outside the volume",
        ),
    ];
    for (what, damage, says) in cases {
        let mut bad = img.clone();
        damage(&mut bad);
        match open(&bad) {
            Err(e @ IsoError::BadPrimary(_)) => {
                assert!(e.to_string().contains(says), "{}: {}", what, e)
            }
            other => panic!("{}: {:?}", what, other),
        }
    }
    // A truncated image: the volume claims more than the device has.
    let short = &img[..img.len() - 8 * 2048];
    assert!(
        matches!(open(short), Err(IsoError::BadPrimary(m)) if m.contains("larger than the device"))
    );
    // No primary descriptor before the terminator.
    let mut bad = img.clone();
    bad[pvd] = 3;
    assert!(matches!(open(&bad), Err(IsoError::BadPrimary(m)) if m.contains("there is none")));
}

#[test]
fn a_directory_that_contains_its_ancestor_is_a_loop() {
    let s = Scratch::new("loop");
    let (mut img, _) = image(&s, &["-R"]);
    let root_lba = u32::from_le_bytes(img[16 * 2048 + 158..16 * 2048 + 162].try_into().unwrap());
    // /deep's record points back at the root directory.
    let rec = find_record(&img, b"DEEP");
    set_both32(&mut img, rec + 2, root_lba);
    let mut d = disk(&img, 2048);
    let v = Volume::open(&mut d).unwrap();
    assert_eq!(
        v.walk(&mut d, &mut |_, _| true),
        Err(IsoError::Loop {
            path: String::from("/deep")
        })
    );
    assert_eq!(
        v.lookup(&mut d, "deep/boot"),
        Err(IsoError::Loop {
            path: String::from("/deep")
        })
    );
    // What does not go through the loop still works.
    assert_eq!(v.lookup(&mut d, "boot/bins/sha").unwrap().size, 23_456);
}

#[test]
fn extents_outside_the_volume_and_broken_records_are_refused() {
    let s = Scratch::new("extent");
    let (img, _) = image(&s, &["-R"]);
    let rec = find_record(&img, b"HELLO.;1");
    let mut bad = img.clone();
    set_both32(&mut bad, rec + 2, 0x7fff_0000);
    let mut d = disk(&bad, 2048);
    let v = Volume::open(&mut d).unwrap();
    // The entry is listed (its directory is fine); reading it is refused.
    let e = v.lookup(&mut d, "boot/bins/hello").unwrap();
    match v.read(&mut d, &e, 0, &mut [0u8; 10]) {
        Err(IsoError::OutOfVolume { what, .. }) => assert_eq!(what, "hello"),
        other => panic!("{:?}", other),
    }
    assert_eq!(v.lookup(&mut d, "boot/bins/sha").unwrap().size, 23_456);
    // A size that runs off the end of the volume.
    let mut bad = img.clone();
    set_both32(&mut bad, rec + 10, 0xffff_fff0);
    let mut d = disk(&bad, 2048);
    let v = Volume::open(&mut d).unwrap();
    let e = v.lookup(&mut d, "boot/bins/hello").unwrap();
    assert!(matches!(
        v.read(&mut d, &e, 0, &mut [0u8; 10]),
        Err(IsoError::OutOfVolume { .. })
    ));
    // A directory whose extent is outside: listing it is refused.
    let mut bad = img.clone();
    let bins = find_record(&bad, b"BINS");
    set_both32(&mut bad, bins + 2, 0x7fff_0000);
    let mut d = disk(&bad, 2048);
    let v = Volume::open(&mut d).unwrap();
    match v.lookup(&mut d, "boot/bins/hello") {
        Err(IsoError::OutOfVolume { what, .. }) => assert_eq!(what, "directory /boot/bins"),
        other => panic!("{:?}", other),
    }
    // A record length that crosses the block, and one too short.
    for len in [255u8, 20] {
        let mut bad = img.clone();
        bad[rec] = len;
        let mut d = disk(&bad, 2048);
        let v = Volume::open(&mut d).unwrap();
        match v.lookup(&mut d, "boot/bins/hello") {
            Err(e @ IsoError::BadRecord { .. }) => {
                assert!(e.to_string().contains("/boot/bins"), "{}", e)
            }
            other => panic!("{}: {:?}", len, other),
        }
    }
    // A Rock Ridge entry whose length runs past its area.
    let mut bad = img.clone();
    let nl = bad[rec + 32] as usize;
    let sua = rec + 33 + nl + (1 - nl % 2);
    bad[sua + 2] = 250;
    let mut d = disk(&bad, 2048);
    let v = Volume::open(&mut d).unwrap();
    assert!(matches!(
        v.lookup(&mut d, "boot/bins/hello"),
        Err(IsoError::BadRecord { .. })
    ));
    // Interleaving is refused by name.
    let mut bad = img.clone();
    bad[rec + 26] = 1;
    let mut d = disk(&bad, 2048);
    let v = Volume::open(&mut d).unwrap();
    assert!(
        matches!(v.lookup(&mut d, "boot/bins/hello"), Err(IsoError::BadRecord { why, .. }) if why.contains("interleaved"))
    );
}

#[test]
fn an_empty_directory_may_name_any_block() {
    // Found by the fuzzer: a zero-length directory whose extent is past the device listed
    // as a device error (naming different sectors for 512- and 2048-byte sectors).
    let s = Scratch::new("emptydir");
    let (mut img, _) = image(&s, &["--norock"]);
    let rec = find_record(&img, b"EMPTY");
    set_both32(&mut img, rec + 2, 0x00ff_ffff);
    set_both32(&mut img, rec + 10, 0);
    for sector in [512, 2048] {
        let mut d = disk(&img, sector);
        let v = Volume::open(&mut d).unwrap();
        let e = v.lookup(&mut d, "empty").unwrap();
        assert_eq!((e.kind, e.size), (Kind::Dir, 0));
        assert!(v.list(&mut d, &e, "/empty").unwrap().is_empty());
    }
}

#[test]
fn a_multi_extent_file_reads_as_one() {
    let s = Scratch::new("multi");
    // Plain names: HELLO.;1 and SHA.;1 are the two records of /BOOT/BINS, in that order.
    let (mut img, files) = image(&s, &["--norock"]);
    let hello = find_record(&img, b"HELLO.;1");
    let sha = find_record(&img, b"SHA.;1");
    assert_eq!(sha, hello + img[hello] as usize, "adjacent records");
    // HELLO gets the multi-extent flag; SHA becomes HELLO's second extent. The first extent's
    // length must be whole blocks: make it one block.
    img[hello + 25] |= 0x80;
    set_both32(&mut img, hello + 10, 2048);
    // Rename SHA.;1 to HELLO.;1 by rewriting its record in place (same length: the record has
    // padding to spare, both are 33 + identifier + pad rounded).
    let sha_len = img[sha] as usize;
    let mut rec = img[sha..sha + 33].to_vec();
    rec[32] = 8;
    rec.extend_from_slice(b"HELLO.;1");
    rec.push(0);
    assert!(rec.len() <= sha_len + (2048 - (sha + sha_len) % 2048) % 2048);
    rec[0] = rec.len() as u8;
    img[sha..sha + rec.len()].copy_from_slice(&rec);
    let mut d = disk(&img, 2048);
    let v = Volume::open(&mut d).unwrap();
    let e = v.lookup(&mut d, "boot/bins/hello").unwrap();
    assert_eq!(e.extents.len(), 2);
    let hello_data = &files.iter().find(|f| f.0 == "boot/bins/hello").unwrap().1;
    let sha_data = &files.iter().find(|f| f.0 == "boot/bins/sha").unwrap().1;
    assert_eq!(e.size, 2048 + sha_data.len() as u64);
    let got = read_all(&v, &mut d, &e);
    assert_eq!(got[..2048], hello_data[..2048]);
    assert_eq!(got[2048..], sha_data[..]);
    // Reads that start inside the second extent, and across the seam.
    let mut b = vec![0u8; 100];
    v.read(&mut d, &e, 2000, &mut b).unwrap();
    assert_eq!(b[..48], hello_data[2000..2048]);
    assert_eq!(b[48..], sha_data[..52]);
}

#[test]
fn paths_refuse_dot_dot_and_empty_components() {
    assert_eq!(components("/").unwrap(), Vec::<&str>::new());
    assert_eq!(components("a/b/").unwrap(), ["a", "b"]);
    for p in ["a//b", "../a", "a/./b", "a/.."] {
        assert!(matches!(components(p), Err(IsoError::BadPath(_))), "{}", p);
    }
}

/// Seeds for the `iso9660` fuzz target (`CAPMON_FUZZ_SEEDS=DIR`): small real images of a small
/// tree (a few files, a symbolic link, directories deeper than 8 levels), with Rock Ridge and
/// Joliet, Joliet only, plain, and Rock Ridge with relocated directories.
#[test]
fn write_fuzz_seeds() {
    let Some(dir) = std::env::var_os("CAPMON_FUZZ_SEEDS") else {
        return;
    };
    let s = Scratch::new("seeds");
    let tree = s.0.join("tree");
    let mut deep = tree.join("boot/bins");
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("hello"), pattern(1, 3000)).unwrap();
    fs::write(tree.join("A Long Mixed Case Name.txt"), b"x\n").unwrap();
    std::os::unix::fs::symlink("boot/bins/hello", tree.join("link")).unwrap();
    for l in 0..10 {
        deep = deep.join(format!("d{}", l));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("bottom"), b"bottom\n").unwrap();
    let seeds: [(&str, &[&str]); 3] = [
        ("rr-joliet", &["-R", "-J"]),
        ("joliet", &["--norock", "-J"]),
        ("plain", &["--norock"]),
    ];
    for (name, opts) in seeds {
        let out = Path::new(&dir).join(format!("{}.iso", name));
        let st = Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-no-pad"])
            .args(opts)
            .arg("-o")
            .arg(&out)
            .arg(&tree)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let out = Path::new(&dir).join("rr-relocated.iso");
    let st = Command::new("xorriso")
        .args([
            "-abort_on",
            "FAILURE",
            "-compliance",
            "deep_paths_off",
            "-rr_reloc_dir",
            "rr_moved",
        ])
        .args(["-padding", "0", "-outdev"])
        .arg(&out)
        .arg("-map")
        .arg(&tree)
        .args(["/", "-commit"])
        .output()
        .unwrap();
    assert!(st.status.success());
}
