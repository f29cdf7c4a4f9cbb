//! The built binary against image files in a temporary directory: a GPT disk made by sgdisk
//! (capmon-block's GPT writer where sgdisk is missing), formatted and filled by the tool, read
//! back and compared with what the test itself computed from the tree it generated.
use capmon_block::{gpt, Pattern};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, UNIX_EPOCH};

const TOOL: &str = env!("CARGO_BIN_EXE_capmon-store");
const MIB: u64 = 1 << 20;

/// A directory under the system's temp dir, removed when the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("capmon-store-{}-{}", test, std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::new(TOOL);
    for a in args {
        c.arg(a);
    }
    c.output().expect("run capmon-store")
}

/// Runs the tool, which must succeed; its stdout.
fn ok(args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "capmon-store {:?} failed ({}): {}",
        args.iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Runs the tool, which must fail with `code` and a one-line error containing `want`.
fn fails(code: i32, want: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) {
    let o = run(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "stderr: {}", err);
    assert!(err.contains(want), "expected '{}' in: {}", want, err);
    if code == 1 {
        assert_eq!(err.lines().count(), 1, "one line: {}", err);
        assert!(err.starts_with("capmon-store: "), "{}", err);
    }
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{:02x}", x))
        .collect()
}

fn file_hash(p: &Path) -> String {
    sha256_hex(&fs::read(p).unwrap())
}

/// A sparse disk image of `disk` bytes with a GPT: partition 1 a small EFI System partition,
/// partition 2 capmon data of `data` bytes.
fn gpt_image(path: &Path, disk: u64, data: u64) {
    let f = fs::File::create(path).unwrap();
    f.set_len(disk).unwrap();
    drop(f);
    let data_first = 2048 + 2048;
    let data_last = data_first + data / 512 - 1;
    let made = Command::new("sgdisk")
        .args(["-o", "-n", "1:2048:4095", "-t", "1:ef00", "-c", "1:ESP"])
        .arg(format!("-n=2:{}:{}", data_first, data_last))
        .args([
            "-t",
            "2:c0a9d47a-3f1e-4b8b-9a43-6361706d6f6e",
            "-c",
            "2:capmon-data",
        ])
        .arg(path)
        .output();
    match made {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!("sgdisk: {}", String::from_utf8_lossy(&o.stderr)),
        Err(_) => {
            eprintln!("sgdisk not runnable: writing the GPT with capmon_block::gpt::build");
            let mut img = vec![0u8; disk as usize];
            let parts = [
                gpt::build::Spec {
                    type_guid: gpt::EFI_SYSTEM,
                    unique_guid: gpt::Guid([1; 16]),
                    first: 2048,
                    last: 4095,
                    name: "ESP",
                },
                gpt::build::Spec {
                    type_guid: gpt::CAPMON_DATA,
                    unique_guid: gpt::Guid([2; 16]),
                    first: data_first,
                    last: data_last,
                    name: "capmon-data",
                },
            ];
            assert!(gpt::build::write(&mut img, 512, gpt::Guid([9; 16]), &parts));
            fs::write(path, img).unwrap();
        }
    }
}

/// The tree the test imports, as it expects the store to hold it: path -> contents (None for
/// a directory).
type Expected = BTreeMap<String, Option<Vec<u8>>>;

fn seeded(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Pattern::Seed(seed).fill(0, &mut v);
    v
}

/// Writes the test tree under `root`: nested directories, an empty file and an empty
/// directory, a 5 MiB file, UTF-8 names, a directory of 2000 entries.
fn make_tree(root: &Path) -> Expected {
    let mut want = Expected::new();
    let dir = |rel: &str| {
        fs::create_dir_all(root.join(rel)).unwrap();
        rel.to_string()
    };
    let dirs = [
        dir("docs"),
        dir("a"),
        dir("a/b"),
        dir("a/b/c"),
        dir("a/b/c/d"),
        dir("a/empty-dir"),
        dir("ünïcødé"),
        dir("many"),
    ];
    for d in dirs {
        want.insert(d, None);
    }
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "README.txt".into(),
            b"a test tree for capmon-store\n".to_vec(),
        ),
        ("empty".into(), Vec::new()),
        ("docs/notes.md".into(), b"# notes\n\nsome text\n".to_vec()),
        ("a/b/c/d/deep.txt".into(), b"four levels down\n".to_vec()),
        ("big.bin".into(), seeded(7, 5 * MIB as usize)),
        ("ünïcødé/名前.txt".into(), "名前\n".as_bytes().to_vec()),
        ("emoji-😀.txt".into(), "😀\n".as_bytes().to_vec()),
        // Not a multiple of the 64 KiB chunk, and larger than one.
        ("a/odd.bin".into(), seeded(8, 65536 + 123)),
    ];
    for i in 0..2000 {
        let data = if i % 100 == 0 {
            Vec::new()
        } else {
            format!("entry {}\n", i).into_bytes()
        };
        files.push((format!("many/f{:04}", i), data));
    }
    for (p, data) in files {
        fs::write(root.join(&p), &data).unwrap();
        want.insert(p, Some(data));
    }
    want
}

/// What `ls DIR` must print for the tree: entries in byte order of their names.
fn expected_ls(want: &Expected, dir: &str) -> String {
    let mut out = String::new();
    let mut n = 0;
    for (p, data) in want {
        let (parent, leaf) = match p.rsplit_once('/') {
            Some((a, b)) => (a, b),
            None => ("", p.as_str()),
        };
        if parent != dir {
            continue;
        }
        n += 1;
        match data {
            Some(d) => out += &format!("f {:>12}  {}\n", d.len(), leaf),
            None => {
                let prefix = format!("{}/", p);
                let entries = want
                    .keys()
                    .filter(|k| k.strip_prefix(&prefix).is_some_and(|r| !r.contains('/')))
                    .count();
                out += &format!("d {:>12}  {}/\n", entries, leaf);
            }
        }
    }
    out + &format!("{} entries\n", n)
}

#[test]
fn mkfs_import_and_read_back() {
    let s = Scratch::new("tree");
    let img = s.path("disk.img");
    gpt_image(&img, 80 * MIB, 64 * MIB);
    let tree = s.path("tree");
    let want = make_tree(&tree);
    // A known mtime, to find again in `stat`.
    let mtime = UNIX_EPOCH + Duration::new(1_600_000_000, 123_456_789);
    fs::File::options()
        .write(true)
        .open(tree.join("docs/notes.md"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();

    fails(1, "not formatted", &[&img, &"ls"]);
    let out = ok(&[&img, &"mkfs"]);
    assert!(
        out.starts_with(&format!(
            "formatted {} partition 2: an empty store (67108864 bytes",
            img.display()
        )),
        "{}",
        out
    );
    assert_eq!(ok(&[&img, &"ls"]), "0 entries\n");

    let out = ok(&[&img, &"import", &tree]);
    let files = want.values().filter(|v| v.is_some()).count();
    let bytes: usize = want.values().flatten().map(Vec::len).sum();
    assert_eq!(
        out,
        format!(
            "imported {} directories and {} files ({} bytes) from {}\n",
            want.len() - files,
            files,
            bytes,
            tree.display()
        )
    );

    for dir in ["", "a", "a/b/c/d", "a/empty-dir", "ünïcødé", "many", "docs"] {
        assert_eq!(
            ok(&[&img, &"ls", &format!("/{}", dir)]),
            expected_ls(&want, dir),
            "ls /{}",
            dir
        );
    }
    let sampled = want.iter().filter(|(p, d)| {
        d.is_some()
            && (!p.starts_with("many/")
                || ["many/f0000", "many/f0001", "many/f1999"].contains(&p.as_str()))
    });
    for (p, data) in sampled {
        let data = data.as_ref().unwrap();
        assert_eq!(
            ok(&[&img, &"sum", p]),
            format!("sha256 {}  {} bytes\n", sha256_hex(data), data.len()),
            "sum {}",
            p
        );
    }
    let big = Command::new(TOOL)
        .arg(&img)
        .args(["cat", "big.bin"])
        .output()
        .unwrap();
    assert!(big.status.success());
    assert!(
        big.stdout == want["big.bin"].clone().unwrap(),
        "cat big.bin gives the file's bytes"
    );
    assert_eq!(ok(&[&img, &"cat", &"ünïcødé/名前.txt"]), "名前\n");

    let st = ok(&[&img, &"stat", &"docs/notes.md"]);
    assert!(
        st.contains("\nmtime       1600000000123456789 ns\n"),
        "{}",
        st
    );
    assert!(st.contains("\nsize        19 bytes\n"), "{}", st);

    let fsck = ok(&[&img, &"fsck"]);
    let dirs = want.len() - files + 1;
    assert!(
        fsck.starts_with(&format!(
            "fsck: 0 objects (0 bytes), 0 names, {} directories, {} files ({} bytes), ",
            dirs, files, bytes
        )),
        "{}",
        fsck
    );
    assert!(fsck.ends_with("fsck: clean\n"), "{}", fsck);

    // Importing the same tree again: the files exist; the transaction leaves the store as it was.
    fails(1, "already exists", &[&img, &"import", &tree]);
    assert_eq!(ok(&[&img, &"ls", &"/"]), expected_ls(&want, ""));
    assert!(ok(&[&img, &"info"]).contains(&format!("files {}, directories {}", files, dirs)));
}

/// The object size in a `put` line: `put NAME: HASH (N bytes, SCHEMA)`.
fn object_size(put: &str) -> u64 {
    let (_, rest) = put.split_once(" (").unwrap();
    rest.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn put_and_get_across_invocations() {
    let s = Scratch::new("objects");
    let img = s.path("disk.img");
    gpt_image(&img, 20 * MIB, 16 * MIB);
    ok(&[&img, &"mkfs"]);
    let put = ok(&[&img, &"put", &"greeting", &"hello,", &"capmon"]);
    assert!(put.starts_with("put greeting: "), "{}", put);
    assert!(put.ends_with(" bytes, TextBody)\n"), "{}", put);
    let hash = put["put greeting: ".len()..][..64].to_string();
    let size = object_size(&put);

    let get = ok(&[&img, &"get", &"greeting"]);
    assert_eq!(
        get,
        format!(
            "greeting: {} TextBody v1, {} bytes\ntext: hello, capmon\n",
            hash, size
        )
    );
    assert_eq!(ok(&[&img, &"get", &"greeting", &"--raw"]), "hello, capmon");

    let put = ok(&[&img, &"put", &"apps/blob", &"--pattern", &"seed:3", &"100K"]);
    assert!(put.ends_with(" bytes, BytesBody)\n"), "{}", put);
    let blob_size = object_size(&put);
    let data = seeded(3, 100 * 1024);
    let get = ok(&[&img, &"get", &"apps/blob"]);
    assert!(
        get.ends_with(&format!(
            "data: 102400 bytes, sha256 {}\n",
            sha256_hex(&data)
        )),
        "{}",
        get
    );
    let raw = Command::new(TOOL)
        .arg(&img)
        .args(["get", "apps/blob", "--raw"])
        .output()
        .unwrap();
    assert!(raw.status.success() && raw.stdout == data);

    let names = ok(&[&img, &"names"]);
    assert_eq!(names.lines().count(), 3, "{}", names);
    assert!(
        names.contains(&format!("object     {}  greeting\n", hash)),
        "{}",
        names
    );
    assert!(names.ends_with("2 name(s)\n"));
    assert_eq!(ok(&[&img, &"names", &"apps/"]).lines().count(), 2);
    let objects = ok(&[&img, &"objects"]);
    assert!(objects.starts_with("hash "), "{}", objects);
    assert!(
        objects.contains(&format!("{}  {:>9}  TextBody   1\n", hash, size)),
        "{}",
        objects
    );
    assert!(
        objects.ends_with(&format!("2 object(s), {} bytes\n", size + blob_size)),
        "{}",
        objects
    );

    assert_eq!(ok(&[&img, &"rm", &"greeting"]), "removed greeting\n");
    fails(
        1,
        "not found: greeting [notFound]",
        &[&img, &"get", &"greeting"],
    );
    assert!(ok(&[&img, &"objects"]).ends_with(&format!("1 object(s), {} bytes\n", blob_size)));
    assert!(ok(&[&img, &"fsck"]).ends_with("fsck: clean\n"));
}

#[test]
fn read_only_commands_leave_the_image_alone() {
    let s = Scratch::new("readonly");
    let img = s.path("disk.img");
    gpt_image(&img, 20 * MIB, 16 * MIB);
    let tree = s.path("tree");
    fs::create_dir_all(tree.join("d")).unwrap();
    fs::write(tree.join("d/f.txt"), "text\n").unwrap();
    ok(&[&img, &"mkfs"]);
    ok(&[&img, &"import", &tree]);
    ok(&[&img, &"put", &"n", &"v"]);
    let before = file_hash(&img);
    let reads: &[&[&str]] = &[
        &["ls"],
        &["ls", "d"],
        &["cat", "d/f.txt"],
        &["sum", "d/f.txt"],
        &["stat", "d"],
        &["get", "n"],
        &["get", "n", "--raw"],
        &["objects"],
        &["names"],
        &["fsck"],
        &["info"],
    ];
    for r in reads {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&img];
        args.extend(r.iter().map(|w| w as &dyn AsRef<std::ffi::OsStr>));
        ok(&args);
        assert_eq!(file_hash(&img), before, "{:?} changed the image", r);
    }
    // Failing reads write nothing either.
    fails(1, "not found", &[&img, &"cat", &"nope"]);
    fails(1, "is a directory", &[&img, &"cat", &"d"]);
    assert_eq!(file_hash(&img), before);
    // A writing command does change it.
    ok(&[&img, &"put", &"n2", &"v2"]);
    assert_ne!(file_hash(&img), before);
}

#[test]
fn partitions_that_are_not_stores_are_named() {
    let s = Scratch::new("bad");
    // Zeros: never formatted.
    let zero = s.path("zero.img");
    fs::write(&zero, vec![0u8; 2 * MIB as usize]).unwrap();
    for cmd in ["ls", "info", "fsck", "objects"] {
        fails(
            1,
            "not formatted: the partition's first 4096 bytes are zero",
            &[&"--raw", &zero, &cmd],
        );
    }
    // Random bytes: foreign.
    let noise = s.path("noise.img");
    fs::write(&noise, seeded(11, 2 * MIB as usize)).unwrap();
    let before = file_hash(&noise);
    fails(
        1,
        "not a capmon store: the partition holds unrecognised data (first bytes",
        &[&"--raw", &noise, &"ls"],
    );
    fails(1, "not a capmon store", &[&"--raw", &noise, &"info"]);
    fails(1, "holds unrecognised data", &[&"--raw", &noise, &"mkfs"]);
    assert_eq!(file_hash(&noise), before, "refused commands write nothing");
    // Random bytes as a whole disk: no GPT.
    fails(1, "no GPT", &[&noise, &"ls"]);
    // A store whose partition lost its end.
    let cut = s.path("cut.img");
    fs::write(&cut, vec![0u8; 8 * MIB as usize]).unwrap();
    ok(&[&"--raw", &cut, &"mkfs"]);
    ok(&[&"--raw", &cut, &"put", &"a", &"b"]);
    let f = fs::File::options().write(true).open(&cut).unwrap();
    f.set_len(2 * MIB).unwrap();
    drop(f);
    fails(
        1,
        "the partition is truncated: the store needs 8388608 bytes, the partition has 2097152",
        &[&"--raw", &cut, &"get", &"a"],
    );
    fails(1, "truncated", &[&"--raw", &cut, &"info"]);
    // mkfs -f formats over anything; without -f a store is refused too.
    ok(&[&"--raw", &noise, &"mkfs", &"-f"]);
    fails(1, "holds a capmon store", &[&"--raw", &noise, &"mkfs"]);
    assert_eq!(ok(&[&"--raw", &noise, &"ls"]), "0 entries\n");
    // Damaged database pages under a good superblock: an error, not a crash.
    let mut bytes = fs::read(&noise).unwrap();
    let garbage = seeded(12, 64 * 1024);
    bytes[8192..8192 + garbage.len()].copy_from_slice(&garbage);
    fs::write(&noise, &bytes).unwrap();
    for cmd in ["ls", "fsck", "info"] {
        let o = run(&[&"--raw", &noise, &cmd]);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{}: {}",
            cmd,
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn gpt_partition_choice() {
    let s = Scratch::new("gpt");
    let img = s.path("disk.img");
    gpt_image(&img, 20 * MIB, 16 * MIB);
    ok(&[&"--part", &"2", &img, &"mkfs"]);
    assert_eq!(ok(&[&img, &"--part", &"2", &"ls"]), "0 entries\n");
    fails(
        1,
        "partition 1 is of type c12a7328-f81f-11d2-ba4b-00a0c93ec93b (EFI System), not capmon data",
        &[&"--part", &"1", &img, &"ls"],
    );
    fails(
        1,
        "the GPT has no partition 3",
        &[&"--part", &"3", &img, &"ls"],
    );
    fails(
        2,
        "exclude each other",
        &[&"--raw", &"--part", &"2", &img, &"ls"],
    );
    let info = ok(&[&img, &"info"]);
    assert!(
        info.starts_with(&format!(
            "partition: {} partition 2: LBA 4096..=36863 (16777216 bytes), \"capmon-data\"",
            img.display()
        )),
        "{}",
        info
    );
    assert!(
        info.contains("\nsuperblock: format version 1, flags 0x0, region "),
        "{}",
        info
    );
}

#[test]
fn import_refuses_what_capmon_cannot_hold() {
    let s = Scratch::new("refuse");
    let img = s.path("disk.img");
    gpt_image(&img, 20 * MIB, 16 * MIB);
    ok(&[&img, &"mkfs"]);
    let before = file_hash(&img);

    let link = s.path("link");
    fs::create_dir_all(link.join("sub")).unwrap();
    fs::write(link.join("sub/file"), "x").unwrap();
    std::os::unix::fs::symlink("file", link.join("sub/alias")).unwrap();
    fails(
        1,
        &format!("{}: a symbolic link", link.join("sub/alias").display()),
        &[&img, &"import", &link],
    );

    let ctl = s.path("ctl");
    fs::create_dir_all(&ctl).unwrap();
    fs::write(ctl.join("bad\x1bname"), "x").unwrap();
    fails(
        1,
        "bad\\x1bname: invalid name 'bad\\x1bname': control character",
        &[&img, &"import", &ctl],
    );

    let fifo = s.path("fifo");
    fs::create_dir_all(&fifo).unwrap();
    let made = Command::new("mkfifo").arg(fifo.join("pipe")).status();
    if made.is_ok_and(|s| s.success()) {
        fails(1, "pipe: a special file", &[&img, &"import", &fifo]);
    }
    fails(
        1,
        "not a directory",
        &[&img, &"import", &s.path("disk.img")],
    );
    assert_eq!(file_hash(&img), before, "a refused import writes nothing");
}

#[test]
fn usage_errors_exit_2() {
    fails(2, "no IMAGE", &[]);
    fails(2, "no COMMAND", &[&"x.img"]);
    fails(
        2,
        "unknown command 'frobnicate'",
        &[&"x.img", &"frobnicate"],
    );
    fails(2, "usage: capmon-store IMAGE get NAME", &[&"x.img", &"get"]);
    fails(
        2,
        "unexpected argument 'extra'",
        &[&"x.img", &"ls", &"/", &"extra"],
    );
    fails(2, "unknown option '--frob'", &[&"--frob", &"x.img", &"ls"]);
    let help = ok(&[&"--help"]);
    for cmd in [
        "mkfs",
        "import DIR",
        "ls [PATH]",
        "cat PATH",
        "sum PATH",
        "put NAME",
        "get NAME",
        "objects",
        "names",
        "rm NAME",
        "fsck",
        "info",
    ] {
        assert!(
            help.contains(&format!("\n  {}", cmd)),
            "--help documents {}",
            cmd
        );
    }
    fails(1, "x.img: No such file", &[&"x.img", &"ls"]);
}

#[test]
fn fs_verbs_change_the_tree_across_invocations() {
    let s = Scratch::new("fsverbs");
    let img = s.path("disk.img");
    gpt_image(&img, 40 * MIB, 32 * MIB);
    ok(&[&img, &"mkfs"]);
    assert_eq!(ok(&[&img, &"fs", &"mkdir", &"/d"]), "mkdir /d\n");
    assert_eq!(ok(&[&img, &"fs", &"mkdir", &"d/e"]), "mkdir /d/e\n");
    assert_eq!(
        ok(&[&img, &"fs", &"put", &"d/note", &"one", &"two"]),
        "put /d/note: 7 bytes\n"
    );
    assert_eq!(
        ok(&[&img, &"fs", &"write", &"d/note", &"3000000", &"100", &"seed:4"]),
        "wrote 100 bytes at 3000000: /d/note is 3000100 bytes\n"
    );
    ok(&[&img, &"fs", &"create", &"d/e/log"]);
    assert_eq!(
        ok(&[
            &img,
            &"fs",
            &"append",
            &"d/e/log",
            &"--pattern",
            &"inc",
            &"2500K"
        ]),
        "appended 2560000 bytes at 0: /d/e/log is 2560000 bytes\n"
    );
    assert_eq!(
        ok(&[&img, &"fs", &"truncate", &"d/e/log", &"1000"]),
        "truncated /d/e/log: 2560000 -> 1000 bytes\n"
    );
    assert_eq!(
        ok(&[&img, &"fs", &"mv", &"d/e/log", &"d/log"]),
        "renamed /d/e/log -> /d/log\n"
    );
    assert!(ok(&[&img, &"fs", &"sync"]).starts_with("synced in "));
    // Refusals: a named error, exit status 1, the image unchanged.
    // (A writable open rewrites redb's header, so the image's bytes change; the store's
    // generation, bumped by every commit, must not.)
    let before = ok(&[&img, &"info"]);
    assert!(before.contains(", generation "), "{}", before);
    for (args, want) in [
        (&["mkdir", "d"][..], "[exists]"),
        (&["rm", "d"][..], "[notEmpty]"),
        (&["rm", "nope"][..], "[notFound]"),
        (&["mv", "d", "d/e/x"][..], "[invalidName]"),
        (&["put", "../x", "y"][..], "[invalidName]"),
        (&["write", "d", "0", "1", "0"][..], "[isDirectory]"),
        (&["bogus"][..], "unknown verb 'bogus'"),
    ] {
        let mut a: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&img, &"fs"];
        for w in args {
            a.push(w);
        }
        fails(1, want, &a);
    }
    assert_eq!(
        ok(&[&img, &"info"]),
        before,
        "a refused verb commits nothing"
    );
    // The bytes, against what the verbs describe.
    let mut note = vec![0u8; 3_000_100];
    note[..7].copy_from_slice(b"one two");
    Pattern::Seed(4).fill(3_000_000, &mut note[3_000_000..]);
    assert_eq!(
        ok(&[&img, &"sum", &"d/note"]),
        format!("sha256 {}  3000100 bytes\n", sha256_hex(&note))
    );
    let mut log = vec![0u8; 1000];
    Pattern::Inc.fill(0, &mut log);
    assert_eq!(
        Command::new(TOOL)
            .arg(&img)
            .args(["cat", "d/log"])
            .output()
            .unwrap()
            .stdout,
        log
    );
    assert_eq!(
        ok(&[&img, &"fs", &"rm", &"-r", &"d"]),
        "removed /d: 4 nodes\n"
    );
    assert_eq!(ok(&[&img, &"ls"]), "0 entries\n");
    assert!(ok(&[&img, &"fsck"]).ends_with("fsck: clean\n"));
}
