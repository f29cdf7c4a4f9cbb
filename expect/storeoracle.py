#!/usr/bin/env python3
"""Host-side oracles for the store proofs (expect/store-*.exp); python3 stdlib (and the `capnp`
compiler, for the schema ids and a second encoding of every message).

Every answer is `KEY VALUE` lines, easy to read from Tcl.

    storeoracle.py text TEXT
        the object `store put NAME TEXT` makes: the canonical Cap'n Proto message of
        Object { schemaId = TextBody's id, version = 1, body = TextBody { text } } (one
        segment, its table, no slack): `hash <sha256 of the message>`, `size <bytes>`,
        `schema <TextBody's id>`
    storeoracle.py bytes PATTERN SIZE
        the same for `store put NAME --pattern PATTERN SIZE` (a BytesBody of SIZE bytes of
        scripts/blkpattern.py's PATTERN from offset 0): `hash`, `size`, `schema`, and
        `datasum <sha256 of the data bytes>`, `datalen <bytes>` (what `store get` prints)
    storeoracle.py schema NAME
        the id of struct NAME in schema/storage.capnp, as `capnp compile -ocapnp` prints it
    storeoracle.py limit
        storage/src/object.rs's MAX_OBJECT_BYTES (`max_object_bytes`), and the largest
        BytesBody data a put accepts under object::check's rule (the canonical message
        without its 8-byte segment table at most MAX_OBJECT_BYTES): `max_data`
    storeoracle.py superblock IMAGE
        the first capmon data partition of IMAGE's GPT (`first`, `last` sectors, `bytes`) and
        its superblock as docs/storage.md lays it out: `magic`, `version`, `flags`,
        `region_len`, `partition_bytes`, `crc stored|computed ok|bad`
    storeoracle.py set-version IMAGE VERSION
        writes VERSION into that superblock's version field and a fresh CRC32 of bytes
        0..56, so only the version is wrong
    storeoracle.py random IMAGE SEED
        fills the capmon data partition of IMAGE with pseudo-random bytes (Python's
        random.Random(SEED)); prints its first 8 bytes as `head xx xx ...`
    storeoracle.py mktree DIR
        makes the tree store-fs imports (DIR must not exist): nested directories, an empty
        file and an empty directory, a 5 MiB file of pseudo-random bytes (random.Random(5)),
        a file one byte over a chunk, a name in UTF-8, names with a space, a leading dot and
        `...`, a text file, and many/ with 2000 files
    storeoracle.py tree DIR
        every node under DIR, sorted: `dir PATH ENTRIES` and `file PATH SIZE MTIME_NS` (PATH
        relative, "" for DIR itself), then `files N`, `dirs N` (with DIR), `bytes N`,
        `chunks N` (ceil(size / 65472) per file, the chunks the store keeps: CHUNK_SIZE in
        storage/src/engine.rs)
    storeoracle.py listing DIR
        DIR's entries as `fs ls` prints them (`d <entries>  name/`, `f <bytes>  name`, sorted
        by the bytes of the name, then `N entries`)
    storeoracle.py fsdo DIR VERB ARGS...
        the monitor's `fs VERB ARGS...` (mkdir, create, put, write, append, truncate, mv,
        rm [-r]) done by the host's own file system on the tree under DIR (os.mkdir, open,
        os.truncate, os.rename, ...): the line the monitor prints for it, or `error [CODE]`
        with the schema's code for the errno (EEXIST exists, ENOENT notFound, ENOTEMPTY
        notEmpty, EISDIR isDirectory, ENOTDIR notDirectory, EINVAL invalidName) or for a path
        capmon's naming rules refuse (invalidName). Pattern bytes are blkpattern.py's at the
        file offsets they land at, as in the monitor.
    storeoracle.py sums DIR
        every file under DIR: `PATH SIZE SHA256`, sorted by path
    storeoracle.py raceblocks FILE
        the file `fs race` leaves (cmds/src/fs_race.rs): records of 15 bytes `C IIIIII KK ok\n`
        in blocks of 8; `A N`, `B N` (whole blocks of each CPU: one CPU's records of one round,
        indices 0..7 in order) and `bad N` (blocks that are not), `bytes N`

A message is built twice: by hand below (the encoding rules of the Cap'n Proto spec,
"Encoding": struct and list pointers, canonicalization: preorder, no slack, data sections
trimmed of trailing zero words), and by `capnp convert text:canonical` over a schema whose
struct has Object's layout with the body typed; the two must agree, or the oracle fails.
"""
import errno
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import uuid
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SCHEMA = os.path.join(REPO, "schema", "storage.capnp")
sys.path.insert(0, os.path.join(REPO, "scripts"))
import blkpattern  # noqa: E402

# storage/src/engine.rs CHUNK_SIZE: the chunk size of every file the store writes.
CHUNK_SIZE = 64 * 1024 - 64
CAPMON_DATA = uuid.UUID("c0a9d47a-3f1e-4b8b-9a43-6361706d6f6e")
# The body schema versions this build writes (storage/src/object.rs TEXT_VERSION, BYTES_VERSION).
VERSION = 1


def die(msg):
    print("storeoracle: " + msg, file=sys.stderr)
    sys.exit(1)


def schema_id(name):
    out = subprocess.run(["capnp", "compile", "-ocapnp", SCHEMA], capture_output=True,
                         text=True, check=True).stdout
    m = re.search(r"^struct %s @(0x[0-9a-f]+) " % re.escape(name), out, re.M)
    if not m:
        die("no struct %s in %s" % (name, SCHEMA))
    return int(m.group(1), 16)


# ---- the message by hand

def struct_ptr(offset, data_words, ptr_words):
    return ((offset & 0x3FFFFFFF) << 2) | (data_words << 32) | (ptr_words << 48)


def list_ptr(offset, elem_size, count):
    return 1 | ((offset & 0x3FFFFFFF) << 2) | (elem_size << 32) | (count << 35)


def envelope(sid, payload, count):
    """Object { schemaId, version, body = Body { field = payload } } in canonical form: the
    root pointer, Object's data (trailing zero words trimmed) and pointer, the body struct
    (no data, one pointer), the byte list; each pointer's target right after it."""
    data = [sid, VERSION]
    while data and data[-1] == 0:
        data.pop()
    words = [struct_ptr(0, len(data), 1)] + data
    # Object's one pointer, to the body right after it; the body's one pointer, to the list
    # right after that.
    words += [struct_ptr(0, 0, 1), list_ptr(0, 2, count)]
    padded = payload + b"\0" * (-len(payload) % 8)
    seg = struct.pack("<%dQ" % len(words), *words) + padded
    return struct.pack("<II", 0, len(seg) // 8) + seg


def by_hand(kind, sid, payload):
    if kind == "text":
        # Text: the bytes and a NUL, counted in the list's length.
        return envelope(sid, payload + b"\0", len(payload) + 1)
    return envelope(sid, payload, len(payload))


# ---- the message by the capnp compiler

def capnp_text_literal(b):
    return '"' + "".join(
        "\\%s" % ch if ch in '"\\' else ch if 0x20 <= ord(ch) < 0x7F or ord(ch) > 0x7F
        else "\\x%02x" % ord(ch) for ch in b.decode("utf-8")) + '"'


def by_capnp(kind, sid, payload):
    body, field, lit = {
        "text": ("TextBody", "text", lambda: capnp_text_literal(payload)),
        # (capnp's text parser takes no empty 0x"": the empty Data is "")
        "bytes": ("BytesBody", "data", lambda: '0x"%s"' % payload.hex() if payload else '""'),
    }[kind]
    with tempfile.TemporaryDirectory() as d:
        shim = os.path.join(d, "shim.capnp")
        with open(shim, "w") as f:
            # Object with its AnyPointer body typed: the same layout (16 data bytes, 1 pointer).
            f.write("@0xd3b5e7a1c2f40911;\n"
                    'using S = import "/storage.capnp";\n'
                    "struct Typed { schemaId @0 :UInt64; version @1 :UInt16; body @2 :S.%s; }\n"
                    % body)
        text = "(schemaId = %d, version = %d, body = (%s = %s))" % (sid, VERSION, field, lit())
        r = subprocess.run(["capnp", "convert", "-I", os.path.dirname(SCHEMA),
                            "text:canonical", shim, "Typed"],
                           input=text.encode(), capture_output=True)
        if r.returncode != 0:
            die("capnp convert: " + r.stderr.decode(errors="replace").strip())
        seg = r.stdout
    return struct.pack("<II", 0, len(seg) // 8) + seg


def message(kind, payload):
    sid = schema_id({"text": "TextBody", "bytes": "BytesBody"}[kind])
    a = by_hand(kind, sid, payload)
    b = by_capnp(kind, sid, payload)
    if a != b:
        die("the hand-built message (%d bytes, sha256 %s) differs from capnp's (%d bytes, %s)"
            % (len(a), hashlib.sha256(a).hexdigest(), len(b), hashlib.sha256(b).hexdigest()))
    return sid, a


def cmd_text(argv):
    sid, m = message("text", " ".join(argv).encode())
    print("hash %s\nsize %d\nschema 0x%016x" % (hashlib.sha256(m).hexdigest(), len(m), sid))


def cmd_bytes(argv):
    pat, size = argv
    data = blkpattern.pattern_bytes(blkpattern.parse_pattern(pat), 0,
                                    blkpattern.parse_amount(size, 512))
    sid, m = message("bytes", data)
    print("hash %s\nsize %d\nschema 0x%016x\ndatasum %s\ndatalen %d" % (
        hashlib.sha256(m).hexdigest(), len(m), sid, hashlib.sha256(data).hexdigest(), len(data)))


def max_object_bytes():
    src = open(os.path.join(REPO, "storage", "src", "object.rs")).read()
    m = re.search(r"pub const MAX_OBJECT_BYTES: usize = (\d+) << (\d+);", src)
    if not m:
        die("no MAX_OBJECT_BYTES = A << B in storage/src/object.rs")
    return int(m.group(1)) << int(m.group(2))


def cmd_limit(_argv):
    lim = max_object_bytes()
    # The stored message (an 8-byte segment table, 5 words of pointers and fields, then the
    # data padded to words) is at most lim bytes: the data at most lim - 48, rounded down.
    print("max_object_bytes %d\nmax_data %d" % (lim, (lim - 48) // 8 * 8))


def cmd_schema(argv):
    print("0x%016x" % schema_id(argv[0]))


# ---- images

def data_partition(f):
    f.seek(512)
    hdr = f.read(92)
    if hdr[:8] != b"EFI PART":
        die("no GPT header at LBA 1")
    entries_lba, count, esize = struct.unpack_from("<QII", hdr, 72)
    f.seek(entries_lba * 512)
    table = f.read(count * esize)
    for i in range(count):
        e = table[i * esize:(i + 1) * esize]
        if e[:16] == CAPMON_DATA.bytes_le:
            first, last = struct.unpack_from("<QQ", e, 32)
            return first, last
    die("no capmon data partition in the GPT")


def cmd_superblock(argv):
    with open(argv[0], "rb") as f:
        first, last = data_partition(f)
        f.seek(first * 512)
        sb = f.read(512)
    version, flags, region_len, part_bytes = struct.unpack_from("<IIQQ", sb, 8)
    stored = struct.unpack_from("<I", sb, 56)[0]
    crc = zlib.crc32(sb[:56]) & 0xFFFFFFFF
    print("first %d\nlast %d\nbytes %d" % (first, last, (last - first + 1) * 512))
    print("magic %s\nversion %d\nflags %d\nregion_len %d\npartition_bytes %d\ncrc %s" % (
        sb[:8].decode("latin-1"), version, flags, region_len, part_bytes,
        "ok" if crc == stored else "bad"))


def cmd_set_version(argv):
    path, version = argv[0], int(argv[1], 0)
    with open(path, "r+b") as f:
        first, _ = data_partition(f)
        f.seek(first * 512)
        sb = bytearray(f.read(512))
        if sb[:8] != b"CAPMONDB":
            die("no capmon superblock at LBA %d" % first)
        struct.pack_into("<I", sb, 8, version)
        struct.pack_into("<I", sb, 56, zlib.crc32(bytes(sb[:56])) & 0xFFFFFFFF)
        f.seek(first * 512)
        f.write(sb)
    print("version %d" % version)


def cmd_random(argv):
    import random
    path, seed = argv[0], int(argv[1], 0)
    rng = random.Random(seed)
    with open(path, "r+b") as f:
        first, last = data_partition(f)
        f.seek(first * 512)
        left = (last - first + 1) * 512
        head = None
        while left:
            n = min(left, 1 << 20)
            b = rng.randbytes(n)
            head = head or b[:8]
            f.write(b)
            left -= n
    print("head " + " ".join("%02x" % x for x in head))


TEXT = ("capmon store-fs proof\n"
        "line two\twith a tab\n"
        "ASCII punctuation: {}[]()<>!?#$%&*+-=/\\|~^`'\"\n"
        "the last line\n")


def cmd_mktree(argv):
    import random
    d = argv[0]
    os.makedirs(d)

    def put(path, data):
        p = os.path.join(d, path)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)

    put("docs/readme.txt", TEXT.encode())
    put("docs/empty", b"")
    put("docs/deep/er/est/leaf.txt", b"a leaf, four directories down\n")
    os.makedirs(os.path.join(d, "docs/deep/void"))
    put("big.bin", random.Random(5).randbytes(5 << 20))
    put("chunk+1.bin", random.Random(6).randbytes(CHUNK_SIZE + 1))
    put("名前-ünï.txt", "UTF-8: 名前, ünï, ✓\n".encode())
    put("with space.txt", b"a name with a space\n")
    put(".hidden", b"dot file\n")
    put("...", b"three dots is a name\n")
    for i in range(2000):
        put("many/f%04d" % i, ("file %d of 2000\n" % i).encode() * (i % 7))


def cmd_tree(argv):
    d = argv[0]
    nodes = []
    files = dirs = size = chunks = 0
    for root, dnames, fnames in os.walk(d):
        rel = os.path.relpath(root, d)
        rel = "" if rel == "." else rel
        nodes.append((os.fsencode(rel), "dir %s %d" % (rel, len(dnames) + len(fnames))))
        dirs += 1
        for n in fnames:
            p = os.path.join(root, n)
            st = os.stat(p)
            r = os.path.join(rel, n)
            nodes.append((os.fsencode(r), "file %s %d %d" % (r, st.st_size, st.st_mtime_ns)))
            files += 1
            size += st.st_size
            chunks += (st.st_size + CHUNK_SIZE - 1) // CHUNK_SIZE
    for _, line in sorted(nodes):
        print(line)
    print("files %d\ndirs %d\nbytes %d\nchunks %d" % (files, dirs, size, chunks))


def cmd_listing(argv):
    d = argv[0]
    names = sorted(os.listdir(d), key=lambda n: os.fsencode(n))
    for n in names:
        p = os.path.join(d, n)
        if os.path.isdir(p):
            print("d %12d  %s/" % (len(os.listdir(p)), n))
        else:
            print("f %12d  %s" % (os.path.getsize(p), n))
    print("%d entries" % len(names))


ERRNO_CODES = {errno.EEXIST: "exists", errno.ENOENT: "notFound", errno.ENOTEMPTY: "notEmpty",
               errno.EISDIR: "isDirectory", errno.ENOTDIR: "notDirectory",
               errno.EINVAL: "invalidName"}


class Refused(Exception):
    """A refusal, by its schema code."""


def fs_path(top, word):
    """The monitor's path_arg (one leading and one trailing '/' dropped), then capmon's naming
    rules (storage/src/name.rs): relative, no empty, `.` or `..` component, no control
    character, at most 255 bytes a component and 1024 in all."""
    p = word[1:] if word.startswith("/") else word
    p = p[:-1] if p.endswith("/") else p
    comps = p.split("/")
    if (not p or len(p.encode()) > 1024
            or any(c in ("", ".", "..") or len(c.encode()) > 255 for c in comps)
            or any(ord(ch) < 0x20 or ord(ch) == 0x7f for ch in p)):
        raise Refused("invalidName")
    return p, os.path.join(top, *comps)


def fs_text_or_pattern(words, at):
    """`TEXT...` or `--pattern P COUNT`: the bytes, for a file whose data starts at `at`."""
    if words and words[0] == "--pattern":
        pat = blkpattern.parse_pattern(words[1])
        n = blkpattern.parse_amount(words[2], 512)
        return blkpattern.pattern_bytes(pat, at, n)
    return " ".join(words).encode()


def fs_nodes(path):
    if not os.path.isdir(path) or os.path.islink(path):
        return 1
    return 1 + sum(fs_nodes(os.path.join(path, n)) for n in os.listdir(path))


def fs_verb(top, verb, a):
    if verb in ("mkdir", "create"):
        p, h = fs_path(top, a[0])
        if verb == "mkdir":
            os.mkdir(h)
        else:
            os.close(os.open(h, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return "%s /%s" % (verb, p)
    if verb == "put":
        p, h = fs_path(top, a[0])
        data = fs_text_or_pattern(a[1:], 0)
        with open(h, "wb") as f:
            f.write(data)
        return "put /%s: %d bytes" % (p, os.path.getsize(h))
    if verb == "write":
        p, h = fs_path(top, a[0])
        off = blkpattern.parse_amount(a[1], 512)
        n = blkpattern.parse_amount(a[2], 512)
        data = blkpattern.pattern_bytes(blkpattern.parse_pattern(a[3]), off, n)
        with open(h, "r+b") as f:
            f.seek(off)
            f.write(data)
        return "wrote %d bytes at %d: /%s is %d bytes" % (n, off, p, os.path.getsize(h))
    if verb == "append":
        p, h = fs_path(top, a[0])
        with open(h, "r+b") as f:
            at = f.seek(0, os.SEEK_END)
            data = fs_text_or_pattern(a[1:], at)
            f.write(data)
        return "appended %d bytes at %d: /%s is %d bytes" % (len(data), at, p,
                                                            os.path.getsize(h))
    if verb == "truncate":
        p, h = fs_path(top, a[0])
        before = os.path.getsize(h) if not os.path.isdir(h) else 0
        if os.path.isdir(h):
            raise OSError(errno.EISDIR, "a directory")
        n = blkpattern.parse_amount(a[1], 512)
        os.truncate(h, n)
        return "truncated /%s: %d -> %d bytes" % (p, before, n)
    if verb == "mv":
        pf, hf = fs_path(top, a[0])
        pt, ht = fs_path(top, a[1])
        os.rename(hf, ht)
        return "renamed /%s -> /%s" % (pf, pt)
    if verb == "rm":
        recursive = a[0] == "-r"
        p, h = fs_path(top, a[1] if recursive else a[0])
        if not os.path.lexists(h):
            raise OSError(errno.ENOENT, "no such node")
        n = fs_nodes(h)
        if os.path.isdir(h):
            if recursive:
                shutil.rmtree(h)
            else:
                os.rmdir(h)
        else:
            os.unlink(h)
        return "removed /%s: %d node%s" % (p, n, "" if n == 1 else "s")
    die("fsdo: verb %s is not modelled" % verb)


def cmd_fsdo(argv):
    top, verb, a = argv[0], argv[1], argv[2:]
    try:
        print(fs_verb(top, verb, a))
    except Refused as r:
        print("error [%s]" % r.args[0])
    except OSError as e:
        if e.errno not in ERRNO_CODES:
            die("fsdo %s: unexpected %s" % (verb, e))
        print("error [%s]" % ERRNO_CODES[e.errno])


def cmd_sums(argv):
    top = argv[0]
    out = []
    for root, _dirs, files in os.walk(top):
        for n in files:
            h = os.path.join(root, n)
            with open(h, "rb") as f:
                d = hashlib.sha256(f.read()).hexdigest()
            out.append((os.path.relpath(h, top), os.path.getsize(h), d))
    for p, n, d in sorted(out, key=lambda t: os.fsencode(t[0])):
        print("%s %d %s" % (p, n, d))


def cmd_raceblocks(argv):
    data = open(argv[0], "rb").read()
    rec, per = 15, 8
    counts = {"A": 0, "B": 0, "bad": 0}
    recs = [data[i:i + rec] for i in range(0, len(data), rec)]
    for b in range(0, len(recs), per):
        blk = recs[b:b + per]
        m = [re.fullmatch(rb"([AB]) (\d{6}) (\d{2}) ok\n", r) for r in blk]
        if len(blk) == per and all(m):
            who = {x.group(1) for x in m}
            rounds = {x.group(2) for x in m}
            if len(who) == 1 and len(rounds) == 1 and \
                    [int(x.group(3)) for x in m] == list(range(per)):
                counts[who.pop().decode()] += 1
                continue
        counts["bad"] += 1
    print("A %d\nB %d\nbad %d\nbytes %d" % (counts["A"], counts["B"], counts["bad"], len(data)))


def main(argv):
    cmds = {"text": cmd_text, "bytes": cmd_bytes, "schema": cmd_schema, "limit": cmd_limit,
            "superblock": cmd_superblock, "set-version": cmd_set_version, "random": cmd_random,
            "mktree": cmd_mktree, "tree": cmd_tree,
            "listing": cmd_listing, "fsdo": cmd_fsdo, "sums": cmd_sums,
            "raceblocks": cmd_raceblocks}
    if not argv or argv[0] not in cmds:
        die("usage: storeoracle.py %s ..." % "|".join(cmds))
    cmds[argv[0]](argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
