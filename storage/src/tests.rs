//! Host tests of every capability semantic, run against both engines, and a differential test
//! of the disk engine against the RAM engine (the model).
extern crate std;

use crate::caps::{DirCap, NamespaceCap, StoreCap, Value};
use crate::disk;
use crate::engine::*;
use crate::error::StoreError;
use crate::object::{self, Body};
use crate::ram::RamEngine;
use crate::rights::Rights;
use crate::{backend, fsck};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use capmon_block::RamDisk;

fn ram() -> Arc<dyn Engine> {
    Arc::new(RamEngine::new())
}

fn disk_engine(bytes: u64, sector: u32) -> Arc<disk::DiskEngine> {
    let mut d = RamDisk::new(bytes, sector).unwrap();
    backend::format(&mut d, 7, 1).unwrap();
    let (e, opened) = disk::open(d, "ram0", true, 1).unwrap();
    assert!(opened.created);
    Arc::new(e)
}

fn disk() -> Arc<dyn Engine> {
    disk_engine(64 << 20, 512)
}

fn engines() -> Vec<(&'static str, Arc<dyn Engine>)> {
    vec![("ram", ram()), ("disk", disk())]
}

fn code<T>(r: Result<T, StoreError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.code_name(),
    }
}

#[test]
fn store_put_get_has_delete_list_stat() {
    for (what, e) in engines() {
        let s = StoreCap::new(e.clone(), Rights::RW);
        let m = object::text("hello");
        let h = s.put(&m).unwrap();
        assert_eq!(h, object::check(&m).unwrap().hash, "{}", what);
        assert!(s.has(&h).unwrap());
        let back = s.get(&h).unwrap();
        assert_eq!(
            object::decode(&back).unwrap().body,
            Body::Text("hello".into())
        );
        // Putting the same content again is the same object.
        assert_eq!(s.put(&m).unwrap(), h);
        assert_eq!(s.list().unwrap().len(), 1);
        let st = s.stat(&h).unwrap();
        assert_eq!(
            (st.size, st.refs, st.schema_id),
            (back.len() as u64, 0, object::text_schema_id())
        );
        s.delete(&h).unwrap();
        assert!(!s.has(&h).unwrap());
        assert_eq!(code(s.get(&h)), "notFound");
        assert_eq!(code(s.delete(&h)), "notFound");
        // Refusals: malformed, oversized.
        assert_eq!(code(s.put(b"not a message")), "malformed", "{}", what);
        let big = object::bytes(&vec![1u8; object::MAX_OBJECT_BYTES]);
        assert_eq!(code(s.put(&big)), "tooLarge");
        assert!(s.list().unwrap().is_empty());
        // A read-only store refuses put and delete but reads.
        let h = s.put(&m).unwrap();
        let ro = s.restrict(Rights::READ);
        assert_eq!(code(ro.put(&m)), "permissionDenied");
        assert_eq!(code(ro.delete(&h)), "permissionDenied");
        assert!(ro.has(&h).unwrap());
        // And it cannot be widened again.
        assert_eq!(ro.restrict(Rights::RW).rights(), Rights::READ);
    }
}

#[test]
fn namespace_bind_lookup_unbind_list() {
    for (what, e) in engines() {
        let ns = NamespaceCap::root(e.clone(), Rights::RW);
        let h = ns.put("greeting", &object::text("hi"), false).unwrap();
        match ns.lookup("greeting").unwrap() {
            Value::Object(x) => assert_eq!(x, h),
            _ => panic!(),
        }
        // Bind without replace refuses an existing name; with replace it works.
        assert_eq!(
            code(ns.bind("greeting", Value::Object(h), false)),
            "exists",
            "{}",
            what
        );
        ns.bind("copy", Value::Object(h), false).unwrap();
        assert_eq!(ns.store().stat(&h).unwrap().refs, 2);
        // A bound object cannot be deleted.
        let s = StoreCap::new(e.clone(), Rights::RW);
        assert_eq!(code(s.delete(&h)), "inUse");
        // Binding a hash that is not in the store is refused.
        assert_eq!(
            code(ns.bind("ghost", Value::Object([9; 32]), false)),
            "notFound"
        );
        let names: Vec<String> = ns.list("").unwrap().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["copy", "greeting"]);
        ns.unbind("copy").unwrap();
        assert_eq!(ns.store().stat(&h).unwrap().refs, 1);
        ns.unbind("greeting").unwrap();
        // The last name gone, the object went with it.
        assert_eq!(code(ns.store().stat(&h)), "notFound");
        assert_eq!(code(ns.unbind("greeting")), "notFound");
        assert_eq!(code(ns.lookup("greeting")), "notFound");
        // Names are validated.
        for bad in ["", "/abs", "a//b", "..", "a/../b", "a/.", "x\x1by"] {
            assert_eq!(
                code(ns.put(bad, &object::text("x"), false)),
                "invalidName",
                "{:?}",
                bad
            );
            assert_eq!(code(ns.lookup(bad)), "invalidName");
        }
        let long = "n".repeat(2000);
        assert_eq!(
            code(ns.put(&long, &object::text("x"), false)),
            "invalidName"
        );
        // Replace moves the reference, and the object left with none goes.
        let a = ns.put("k", &object::text("a"), false).unwrap();
        let b = ns.put("k", &object::text("b"), true).unwrap();
        assert_eq!(code(ns.store().stat(&a)), "notFound");
        assert_eq!(ns.store().stat(&b).unwrap().refs, 1);
        // Unless another name still binds it.
        ns.bind("k2", Value::Object(b), false).unwrap();
        ns.put("k", &object::text("c"), true).unwrap();
        assert_eq!(ns.store().stat(&b).unwrap().refs, 1);
        // Putting the same content again keeps it.
        let c = ns.put("k", &object::text("c"), true).unwrap();
        assert_eq!(ns.store().stat(&c).unwrap().refs, 1);
    }
}

#[test]
fn sub_namespaces_are_confined() {
    for (_, e) in engines() {
        let root = NamespaceCap::root(e.clone(), Rights::RW);
        root.put("apps/a/save", &object::text("a"), false).unwrap();
        root.put("apps/b/save", &object::text("b"), false).unwrap();
        root.put("secret", &object::text("s"), false).unwrap();
        let a = root.sub("apps/a").unwrap();
        assert!(matches!(a.lookup("save").unwrap(), Value::Object(_)));
        // Siblings and parents are out of reach: every way of naming them is refused.
        assert_eq!(code(a.lookup("../b/save")), "invalidName");
        assert_eq!(code(a.lookup("/apps/b/save")), "invalidName");
        assert_eq!(code(a.lookup("secret")), "notFound");
        let names: Vec<String> = a.list("").unwrap().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["save"]);
        // A prefix is a whole component: "apps/a" does not reach "apps/ab".
        root.put("apps/ab/x", &object::text("x"), false).unwrap();
        assert_eq!(a.list("").unwrap().len(), 1);
        // What a sub binds lands under its prefix.
        a.put("new", &object::text("n"), false).unwrap();
        assert!(root.lookup("apps/a/new").is_ok());
        // Nested subs compose.
        let aa = root.sub("apps").unwrap().sub("a").unwrap();
        assert!(aa.lookup("new").is_ok());
        assert_eq!(code(root.sub("..")), "invalidName");
    }
}

#[test]
fn read_only_refuses_every_mutation_and_attenuates_lookups() {
    for (_, e) in engines() {
        let root = NamespaceCap::root(e.clone(), Rights::RW);
        let h = root.put("obj", &object::text("o"), false).unwrap();
        root.bind("apps", Value::Namespace(root.sub("apps").unwrap()), false)
            .unwrap();
        root.bind(
            "st",
            Value::Store(StoreCap::new(e.clone(), Rights::RW)),
            false,
        )
        .unwrap();
        let ro = root.read_only();
        assert_eq!(ro.rights(), Rights::READ);
        assert_eq!(
            code(ro.bind("x", Value::Object(h), false)),
            "permissionDenied"
        );
        assert_eq!(
            code(ro.put("x", &object::text("x"), false)),
            "permissionDenied"
        );
        assert_eq!(code(ro.unbind("obj")), "permissionDenied");
        assert!(ro.lookup("obj").is_ok());
        // A sub of a read-only namespace is read-only.
        assert_eq!(
            code(ro.sub("apps").unwrap().put("y", &object::text("y"), false)),
            "permissionDenied"
        );
        // A capability looked up through it carries no more than read.
        match ro.lookup("apps").unwrap() {
            Value::Namespace(n) => {
                assert_eq!(n.rights(), Rights::READ);
                assert_eq!(
                    code(n.put("z", &object::text("z"), false)),
                    "permissionDenied"
                );
            }
            _ => panic!(),
        }
        match ro.lookup("st").unwrap() {
            Value::Store(s) => {
                assert_eq!(s.rights(), Rights::READ);
                assert_eq!(code(s.put(&object::text("q"))), "permissionDenied");
            }
            _ => panic!(),
        }
        // The same lookup through the read-write root keeps the bound rights.
        match root.lookup("apps").unwrap() {
            Value::Namespace(n) => assert_eq!(n.rights(), Rights::RW),
            _ => panic!(),
        }
        // A capability bound with fewer rights stays narrow when looked up through rw.
        root.bind(
            "apps-ro",
            Value::Namespace(root.sub("apps").unwrap().read_only()),
            false,
        )
        .unwrap();
        match root.lookup("apps-ro").unwrap() {
            Value::Namespace(n) => assert_eq!(n.rights(), Rights::READ),
            _ => panic!(),
        }
        let listed = ro.list("").unwrap();
        assert!(listed
            .iter()
            .all(|n| n.rights.is_none_or(|r| r == Rights::READ)));
    }
}

#[test]
fn foreign_capabilities_are_refused() {
    let (a, b) = (ram(), disk());
    let na = NamespaceCap::root(a.clone(), Rights::RW);
    let nb = NamespaceCap::root(b.clone(), Rights::RW);
    assert_eq!(
        code(na.bind("x", Value::Namespace(nb.clone()), false)),
        "foreignCapability"
    );
    assert_eq!(
        code(nb.bind("x", Value::Store(StoreCap::new(a, Rights::RW)), false)),
        "foreignCapability"
    );
}

fn import_sample(e: &Arc<dyn Engine>) {
    let big: Vec<u8> = (0..(5u32 << 20) + 123)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let mut items = vec![
        ImportItem {
            path: "docs",
            data: None,
            mtime_ns: 5,
        },
        ImportItem {
            path: "docs/readme.txt",
            data: Some(b"read me\n"),
            mtime_ns: 6,
        },
        ImportItem {
            path: "docs/empty",
            data: Some(b""),
            mtime_ns: 7,
        },
        ImportItem {
            path: "docs/deep",
            data: None,
            mtime_ns: 7,
        },
        ImportItem {
            path: "docs/deep/er",
            data: None,
            mtime_ns: 7,
        },
        ImportItem {
            path: "docs/deep/er/x",
            data: Some(b"x"),
            mtime_ns: 7,
        },
        ImportItem {
            path: "big.bin",
            data: Some(&big),
            mtime_ns: 8,
        },
        ImportItem {
            path: "名前-ünï",
            data: Some("utf-8 ✓".as_bytes()),
            mtime_ns: 9,
        },
        ImportItem {
            path: "many",
            data: None,
            mtime_ns: 9,
        },
    ];
    let names: Vec<String> = (0..2000).map(|i| format!("many/f{:04}", i)).collect();
    for n in &names {
        items.push(ImportItem {
            path: n,
            data: Some(n.as_bytes()),
            mtime_ns: 10,
        });
    }
    e.import(&items).unwrap();
}

#[test]
fn directory_reads_and_confinement() {
    for (what, e) in engines() {
        import_sample(&e);
        let root = DirCap::root(e.clone(), Rights::READ);
        let names: Vec<String> = root.list().unwrap().into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["big.bin", "docs", "many", "名前-ünï"], "{}", what);
        assert_eq!(root.open_dir("many").unwrap().list().unwrap().len(), 2000);
        let f = root.open("docs/readme.txt", Rights::READ).unwrap();
        let mut buf = [0u8; 64];
        let n = f.read(0, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"read me\n");
        assert_eq!(f.read(100, &mut buf).unwrap(), 0);
        assert_eq!(root.stat("docs/empty").unwrap().size, 0);
        // The 5 MiB file reads back exactly, across chunk boundaries, at odd offsets.
        let big = root.open("big.bin", Rights::READ).unwrap();
        let size = big.stat().unwrap().size;
        assert_eq!(size, (5 << 20) + 123);
        let mut all = vec![0u8; size as usize];
        let mut off = 0;
        while off < size {
            let want = (size - off).min(100_003) as usize;
            let n = big
                .read(off, &mut all[off as usize..off as usize + want])
                .unwrap();
            assert!(n > 0);
            off += n as u64;
        }
        assert!(all
            .iter()
            .enumerate()
            .all(|(i, b)| *b == (i as u32 * 7 % 251) as u8));
        // No escape from a subdirectory.
        let docs = root.open_dir("docs").unwrap();
        assert_eq!(code(docs.open("../big.bin", Rights::READ)), "invalidName");
        assert_eq!(code(docs.open("/big.bin", Rights::READ)), "invalidName");
        assert_eq!(code(docs.open("big.bin", Rights::READ)), "notFound");
        assert_eq!(code(docs.open("deep", Rights::READ)), "isDirectory");
        assert_eq!(code(docs.open_dir("readme.txt")), "notDirectory");
        // Rights: a read-only directory cannot open for write, nor a restricted one read.
        assert_eq!(
            code(root.open("docs/readme.txt", Rights::RW)),
            "permissionDenied"
        );
        let none = root.restrict(Rights::NONE);
        assert_eq!(code(none.list()), "permissionDenied");
        // A directory bound in a namespace comes back with no more rights than the namespace.
        let ns = NamespaceCap::root(e.clone(), Rights::RW);
        ns.bind("d", Value::Directory(docs.clone()), false).unwrap();
        match ns.read_only().lookup("d").unwrap() {
            Value::Directory(d) => {
                assert_eq!(d.rights(), Rights::READ);
                assert_eq!(d.list().unwrap().len(), 3);
            }
            _ => panic!(),
        }
        // Importing over an existing file is refused and changes nothing.
        let before = e.fs_list(ROOT_INODE).unwrap();
        assert_eq!(
            code(e.import(&[
                ImportItem {
                    path: "new",
                    data: Some(b"n"),
                    mtime_ns: 0
                },
                ImportItem {
                    path: "big.bin",
                    data: Some(b"x"),
                    mtime_ns: 0
                },
            ])),
            "exists"
        );
        assert_eq!(e.fs_list(ROOT_INODE).unwrap(), before);
    }
}

#[test]
fn fsck_is_clean_after_everything() {
    let d = disk_engine(32 << 20, 4096);
    let e: Arc<dyn Engine> = d.clone();
    import_sample(&e);
    let ns = NamespaceCap::root(e.clone(), Rights::RW);
    for i in 0..50 {
        ns.put(
            &format!("o/{}", i),
            &object::text(&format!("{}", i % 7)),
            true,
        )
        .unwrap();
    }
    for i in 0..20 {
        ns.unbind(&format!("o/{}", i)).unwrap();
    }
    let r = fsck::fsck(&*e, Some(&d)).unwrap();
    assert!(r.clean(), "{:?}", r.problems);
    assert_eq!(r.names, 30);
    assert_eq!(r.files, 2000 + 5);
    let r = fsck::fsck(&*ram(), None).unwrap();
    assert!(r.clean());
}

#[test]
fn the_disk_store_survives_reopening() {
    let mut d = RamDisk::new(8 << 20, 512).unwrap();
    backend::format(&mut d, 1, 1).unwrap();
    let image;
    {
        let (e, _) = disk::open(d, "ram0", true, 1).unwrap();
        let e: Arc<dyn Engine> = Arc::new(e);
        NamespaceCap::root(e.clone(), Rights::RW)
            .put("kept", &object::text("across reopen"), false)
            .unwrap();
        image = e; // keep the engine alive until the end of the block, then drop (close) it
    }
    drop(image);
    // The engine owned the RamDisk: reopen on a copy made through a second engine is not
    // possible, so check through the same path the kernel uses: a SharedDevice.
    let shared =
        capmon_block::partition::share(alloc::boxed::Box::new(RamDisk::new(8 << 20, 512).unwrap()));
    {
        let mut dev = crate::session::SharedDev::new(shared.clone());
        backend::format(&mut dev, 2, 2).unwrap();
        let (e, _) = disk::open(
            crate::session::SharedDev::new(shared.clone()),
            "ram0",
            true,
            2,
        )
        .unwrap();
        let e: Arc<dyn Engine> = Arc::new(e);
        NamespaceCap::root(e, Rights::RW)
            .put("kept", &object::text("across reopen"), false)
            .unwrap();
    }
    let (e, opened) = disk::open(
        crate::session::SharedDev::new(shared.clone()),
        "ram0",
        true,
        3,
    )
    .unwrap();
    assert!(!opened.created);
    let e: Arc<dyn Engine> = Arc::new(e);
    let ns = NamespaceCap::root(e.clone(), Rights::RW);
    let Value::Object(h) = ns.lookup("kept").unwrap() else {
        panic!()
    };
    let b = ns.store().get(&h).unwrap();
    assert_eq!(
        object::decode(&b).unwrap().body,
        Body::Text("across reopen".into())
    );
    drop(ns);
    drop(e);
    // Read-only: reads, refuses writes, never writes the device.
    let before = {
        let d = shared.borrow();
        let mut v = vec![0u8; 8 << 20];
        let _ = d;
        drop(d);
        shared.borrow_mut().read(0, &mut v).unwrap();
        v
    };
    let (e, _) = disk::open(
        crate::session::SharedDev::new(shared.clone()),
        "ram0",
        false,
        4,
    )
    .unwrap();
    let e: Arc<dyn Engine> = Arc::new(e);
    assert!(e.read_only());
    let ns = NamespaceCap::root(e.clone(), Rights::READ);
    assert!(ns.lookup("kept").is_ok());
    let rw = NamespaceCap::root(e.clone(), Rights::RW);
    assert_eq!(
        code(rw.put("x", &object::text("x"), false)),
        "permissionDenied"
    );
    drop(ns);
    drop(rw);
    drop(e);
    let mut after = vec![0u8; 8 << 20];
    shared.borrow_mut().read(0, &mut after).unwrap();
    assert!(before == after, "a read-only open wrote to the device");
}

#[test]
fn a_full_partition_is_no_space_and_the_store_stays_usable() {
    let d = disk_engine(2 << 20, 512);
    let e: Arc<dyn Engine> = d.clone();
    let ns = NamespaceCap::root(e.clone(), Rights::RW);
    let mut last = Ok(object::check(&object::text("x")).unwrap().hash);
    for i in 0..40 {
        last = ns.put(
            &format!("f{}", i),
            &object::bytes(&vec![i as u8; 200_000]),
            false,
        );
        if last.is_err() {
            break;
        }
    }
    assert_eq!(code(last), "noSpace");
    // The failed transaction left nothing behind, and the store still reads and writes.
    assert!(matches!(ns.lookup("f0"), Ok(Value::Object(_))));
    ns.unbind("f0").unwrap();
    ns.put("small", &object::text("fits"), false).unwrap();
    let r = fsck::fsck(&*e, Some(&d)).unwrap();
    assert!(r.clean(), "{:?}", r.problems);
}

/// splitmix64: a seeded stream for the differential test and the crash harness.
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub(crate) fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

#[test]
fn the_disk_engine_agrees_with_the_ram_model() {
    let model = ram();
    let d = disk_engine(16 << 20, 512);
    let real: Arc<dyn Engine> = d.clone();
    let names = ["a", "b", "c/d", "c/e", "f/g/h", "zz"];
    let texts: Vec<Vec<u8>> = (0..6).map(|i| object::text(&format!("t{}", i))).collect();
    let mut rng = Rng(42);
    for step in 0..600 {
        let n = names[rng.below(names.len() as u64) as usize];
        let t = &texts[rng.below(texts.len() as u64) as usize];
        let h = object::check(t).unwrap().hash;
        let op = rng.below(7);
        let run = |e: &Arc<dyn Engine>| -> String {
            let ns = NamespaceCap::root(e.clone(), Rights::RW);
            let s = StoreCap::new(e.clone(), Rights::RW);
            match op {
                0 => code(ns.put(n, t, false)).into(),
                1 => code(ns.put(n, t, true)).into(),
                2 => code(ns.unbind(n)).into(),
                3 => code(s.delete(&h)).into(),
                4 => code(s.put(t)).into(),
                5 => code(ns.bind(n, Value::Object(h), rng_flag(step))).into(),
                _ => match ns.lookup(n) {
                    Ok(Value::Object(x)) => object::hex(&x),
                    Ok(_) => "cap".into(),
                    Err(e) => e.code_name().into(),
                },
            }
        };
        assert_eq!(
            run(&model),
            run(&real),
            "step {} op {} name {}",
            step,
            op,
            n
        );
    }
    assert_eq!(model.names("").unwrap(), real.names("").unwrap());
    let mut a = model.objects().unwrap();
    let mut b = real.objects().unwrap();
    a.sort_by_key(|o| o.hash);
    b.sort_by_key(|o| o.hash);
    assert_eq!(a, b);
    let r = fsck::fsck(&*real, Some(&d)).unwrap();
    assert!(r.clean(), "{:?}", r.problems);
}

fn rng_flag(step: usize) -> bool {
    step.is_multiple_of(3)
}

/// Writes the fuzz seed corpora for `store_object` and `store_records` from the real encoders:
/// `CAPMON_WRITE_SEEDS=$PWD/fuzz/corpus cargo test -p capmon-storage write_fuzz_seeds -- --ignored`.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let Ok(dir) = std::env::var("CAPMON_WRITE_SEEDS") else {
        return;
    };
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let d = std::path::Path::new(&dir).join(target);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), bytes).unwrap();
    };
    put("store_object", "text", &object::text("hello, store"));
    put(
        "store_object",
        "text-canonical",
        &object::check(&object::text("hi")).unwrap().canonical,
    );
    put("store_object", "bytes", &object::bytes(&[0xa5; 300]));
    let mut b =
        capnp::message::Builder::new(capnp::message::HeapAllocator::new().first_segment_words(2));
    {
        let mut o = b.init_root::<capmon_schema::storage_capnp::object::Builder>();
        o.set_schema_id(0x1234_5678);
        o.set_version(3);
        o.init_body()
            .init_as::<capmon_schema::storage_capnp::text_body::Builder>()
            .set_text("two segments, unknown schema");
    }
    put(
        "store_object",
        "multi-segment-unknown",
        &capnp::serialize::write_message_to_words(&b),
    );
    put(
        "store_records",
        "binding-object",
        &disk::encode_binding(&Stored::Object([7; 32])),
    );
    for (k, kind) in [
        CapKind::Store,
        CapKind::Namespace,
        CapKind::Directory,
        CapKind::File,
    ]
    .iter()
    .enumerate()
    {
        put(
            "store_records",
            &format!("binding-cap-{}", kind.name()),
            &disk::encode_binding(&Stored::Cap(SturdyRef {
                kind: *kind,
                path: format!("apps/{}/", k),
                rights: Rights::from_bits(k as u8 + 1),
            })),
        );
    }
    let st = NodeStat {
        kind: NodeKind::File,
        size: 5 << 20,
        inode: 7,
        generation: 3,
        mtime_ns: 1_700_000_000_000_000_000,
        ctime_ns: 1_700_000_000_000_000_001,
        chunk_size: CHUNK_SIZE,
    };
    put("store_records", "inode-file", &disk::encode_inode(&st, 1));
    let dir_st = NodeStat {
        kind: NodeKind::Dir,
        size: 2000,
        chunk_size: 0,
        ..st
    };
    put(
        "store_records",
        "inode-dir",
        &disk::encode_inode(&dir_st, 1),
    );
    // store_image: the region (the redb file) of a small store with objects, names and files.
    let shared =
        capmon_block::partition::share(alloc::boxed::Box::new(RamDisk::new(4 << 20, 512).unwrap()));
    backend::format(&mut crate::session::SharedDev::new(shared.clone()), 5, 5).unwrap();
    {
        let (e, _) = disk::open(
            crate::session::SharedDev::new(shared.clone()),
            "ram0",
            true,
            5,
        )
        .unwrap();
        let e: Arc<dyn Engine> = Arc::new(e);
        let ns = NamespaceCap::root(e.clone(), Rights::RW);
        ns.put("a", &object::text("alpha"), false).unwrap();
        ns.put("apps/b", &object::bytes(&[3; 5000]), false).unwrap();
        ns.bind("apps-ns", Value::Namespace(ns.sub("apps").unwrap()), false)
            .unwrap();
        e.import(&[
            ImportItem {
                path: "d",
                data: None,
                mtime_ns: 1,
            },
            ImportItem {
                path: "d/f",
                data: Some(&[9; 70_000]),
                mtime_ns: 2,
            },
            ImportItem {
                path: "e",
                data: Some(b""),
                mtime_ns: 3,
            },
        ])
        .unwrap();
    }
    let mut img = vec![0u8; 4 << 20];
    shared.borrow_mut().read(0, &mut img).unwrap();
    let sb = backend::Superblock::decode(&img).unwrap();
    put(
        "store_image",
        "small-store",
        &img[4096..4096 + sb.region_len as usize],
    );
}

#[test]
fn a_lock_left_held_is_busy_not_a_hang() {
    let e = RamEngine::new();
    core::mem::forget(e.state.lock());
    let e: Arc<dyn Engine> = Arc::new(e);
    let ns = NamespaceCap::root(e.clone(), Rights::RW);
    assert_eq!(code(ns.lookup("x")), "busy");
    assert_eq!(code(ns.put("x", &object::text("y"), false)), "busy");
    let d = disk_engine(8 << 20, 512);
    core::mem::forget(d.db.lock());
    let e: Arc<dyn Engine> = d.clone();
    assert_eq!(code(e.info()), "busy");
    assert_eq!(code(NamespaceCap::root(e, Rights::RW).lookup("x")), "busy");
}

#[test]
fn files_are_written_renamed_and_removed_alike_in_both_engines() {
    for (name, e) in engines() {
        let d = DirCap::root(e.clone(), Rights::ALL);
        d.mkdir("a").unwrap();
        d.mkdir("a/b").unwrap();
        assert_eq!(code(d.mkdir("a")), "exists", "{}", name);
        d.put("a/f", b"hello").unwrap();
        let f = d.open("a/f", Rights::ALL).unwrap();
        // The writer policy: one writable capability per file.
        assert_eq!(code(d.open("a/f", Rights::WRITE)), "busy", "{}", name);
        assert_eq!(code(d.remove("a/f", false)), "busy", "{}", name);
        f.write(70_000, b"xy").unwrap();
        assert_eq!(f.append(b"z").unwrap(), 70_002);
        let mut buf = vec![0xffu8; 70_003];
        assert_eq!(f.read(0, &mut buf).unwrap(), 70_003);
        assert_eq!(&buf[..5], b"hello");
        assert!(
            buf[5..70_000].iter().all(|&b| b == 0),
            "{}: a hole reads as zeros",
            name
        );
        assert_eq!(&buf[70_000..], b"xyz");
        f.truncate(3).unwrap();
        f.truncate(10).unwrap();
        let mut buf = [0xffu8; 10];
        assert_eq!(f.read(0, &mut buf).unwrap(), 10);
        assert_eq!(
            &buf, b"hel\0\0\0\0\0\0\0",
            "{}: a cut tail does not come back",
            name
        );
        drop(f);
        assert_eq!(code(d.rename("a", "a/b/c")), "invalidName", "{}", name);
        d.rename("a/f", "a/b/g").unwrap();
        assert_eq!(code(d.stat("a/f")), "notFound");
        assert_eq!(d.stat("a/b/g").unwrap().size, 10);
        assert_eq!(code(d.remove("a", false)), "notEmpty", "{}", name);
        let ro = d.read_only();
        assert_eq!(code(ro.mkdir("z")), "permissionDenied");
        assert_eq!(code(ro.open("a/b/g", Rights::WRITE)), "permissionDenied");
        let app = d.open("a/b/g", Rights::APPEND).unwrap();
        assert_eq!(code(app.write(0, b"q")), "permissionDenied");
        assert_eq!(app.append(b"!").unwrap(), 10);
        assert_eq!(
            code(app.restrict(Rights::ALL).truncate(0)),
            "permissionDenied"
        );
        drop(app);
        d.sync().unwrap();
        assert_eq!(d.remove("a", true).unwrap(), 3, "{}", name);
        assert!(d.list().unwrap().is_empty());
        let r = fsck::fsck(&*e, None).unwrap();
        assert!(r.clean(), "{}: {:?}", name, r.problems);
    }
}

#[test]
fn file_changes_wait_for_sync_and_a_store_change_makes_them_durable() {
    // 64 MiB: far from full, so file commits are not flushed (docs/storage.md).
    let shared = capmon_block::partition::share(alloc::boxed::Box::new(
        RamDisk::new(64 << 20, 512).unwrap(),
    ));
    let dev = || crate::session::SharedDev::new(shared.clone());
    backend::format(&mut dev(), 3, 1).unwrap();
    let (e, _) = disk::open(dev(), "ram0", true, 1).unwrap();
    let s = crate::session::Session::disk(e, String::from("t"), Default::default());
    s.fs.mkdir("d").unwrap();
    s.fs.put("d/f", b"one").unwrap();
    assert_eq!(s.engine.unsynced(), 2);
    // A Store mutation is durable on return, and so is everything committed before it.
    s.root.put("n", &object::text("x"), false).unwrap();
    assert_eq!(s.engine.unsynced(), 0);
    s.fs.put("d/g", b"two").unwrap();
    s.fs.rename("d/f", "d/h").unwrap();
    assert_eq!(s.engine.unsynced(), 2);
    assert_eq!(s.sync_for_close().unwrap(), 2);
    assert_eq!(s.sync_for_close().unwrap(), 0);
    drop(s);
    let (e, _) = disk::open(dev(), "ram0", true, 2).unwrap();
    let d = DirCap::root(Arc::new(e), Rights::READ);
    let names: Vec<String> = d.list().unwrap().into_iter().map(|x| x.name).collect();
    assert_eq!(names, ["d"]);
    let mut buf = [0u8; 8];
    let f = d.open("d/h", Rights::READ).unwrap();
    assert_eq!(f.read(0, &mut buf).unwrap(), 3);
    assert_eq!(&buf[..3], b"one");
    assert_eq!(code(d.stat("d/f")), "notFound");
    assert_eq!(d.stat("d/g").unwrap().size, 3);
}

#[test]
fn fsck_finds_a_wrong_parent_and_a_stale_next_inode() {
    let d = disk_engine(16 << 20, 512);
    let e: Arc<dyn Engine> = d.clone();
    let root = DirCap::root(e.clone(), Rights::ALL);
    root.mkdir("a").unwrap();
    root.put("a/f", b"x").unwrap();
    let a = e.fs_lookup(ROOT_INODE, "a").unwrap().unwrap();
    let f = e.fs_lookup(a, "f").unwrap().unwrap();
    assert!(fsck::fsck(&*e, Some(&d)).unwrap().clean());
    d.damage(f, ROOT_INODE, None).unwrap();
    let r = fsck::fsck(&*e, Some(&d)).unwrap();
    assert_eq!(
        r.problems,
        [format!(
            "inode {}: records parent {}, its entry is in {}",
            f, ROOT_INODE, a
        )]
    );
    d.damage(f, a, Some(("next_inode", f))).unwrap();
    let r = fsck::fsck(&*e, Some(&d)).unwrap();
    assert_eq!(
        r.problems,
        [format!("inode {}: not below next_inode {}", f, f)]
    );
}

#[test]
fn redb_growth_is_bounded_as_it_grows() {
    const M: u64 = 1 << 20;
    // Doubling below a region, at least by the slack.
    assert_eq!(disk::worst_growth(6 * M, 0), 22 * M);
    assert_eq!(disk::worst_growth(32 * M, M), 64 * M);
    assert_eq!(disk::worst_growth(M, 16 * M), 68 * M);
    // Past a region, by two regions a step.
    assert_eq!(disk::worst_growth(5 << 30, 0), 13 << 30);
    assert_eq!(disk::worst_growth(u64::MAX - 5, 0), u64::MAX);
}

#[test]
fn filling_a_partition_with_file_writes_loses_none_that_returned() {
    // 64 MiB: the first writes are far from full and commit without a flush; redb's file then
    // grows by doubling, and the step that does not fit must not cost them.
    let d = disk_engine(64 << 20, 512);
    let e: Arc<dyn Engine> = d.clone();
    let root = DirCap::root(e.clone(), Rights::ALL);
    root.put("early", b"committed without a flush").unwrap();
    assert_eq!(e.unsynced(), 1);
    root.create("fill").unwrap();
    let f = root.open("fill", Rights::APPEND).unwrap();
    let step = vec![0x5au8; 1 << 20];
    let mut kept = 0u64;
    let err = loop {
        match f.append(&step) {
            Ok(_) => kept += step.len() as u64,
            Err(e) => break e,
        }
        assert!(kept < 64 << 20, "a 64 MiB partition held {} bytes", kept);
    };
    assert_eq!(err.code_name(), "noSpace", "{}", err);
    // redb's file doubles: 49 MiB is its last step under 63 MiB, and chunks pack it whole.
    assert!(kept >= 40 << 20, "only {} bytes fit", kept);
    drop(f);
    assert_eq!(root.stat("fill").unwrap().size, kept);
    let mut buf = [0u8; 64];
    let n = root
        .open("early", Rights::READ)
        .unwrap()
        .read(0, &mut buf)
        .unwrap();
    assert_eq!(&buf[..n], b"committed without a flush");
    assert!(fsck::fsck(&*e, Some(&d)).unwrap().clean());
    root.remove("fill", false).unwrap();
    root.put("after", &vec![1u8; 8 << 20]).unwrap();
    assert!(fsck::fsck(&*e, Some(&d)).unwrap().clean());
}
