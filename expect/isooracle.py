#!/usr/bin/env python3
"""Host oracles for the ISO proofs, from xorriso and the image's own bytes.

  isooracle.py listing ISO        every path as `TYPE PATH SIZE` (size for files, `-` for
                                  directories, `-> TARGET` for links), sorted, as xorriso sees it
  isooracle.py sums ISO           `SHA256 PATH` of every regular file (xorriso extracts them)
  isooracle.py volume ISO         `ID BLOCKS BLOCKSIZE` from the primary volume descriptor
  isooracle.py damage ISO OUT HOW a copy of ISO damaged: `pvd` (the logical block size's two
                                  byte orders disagree), `loop` (/boot's record points at the
                                  root directory), `extent` (/boot/capmon.elf's extent lies
                                  past the end of the volume)
"""
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

BLOCK = 2048
PVD = 16 * BLOCK


def xorriso(*args):
    out = subprocess.run(["xorriso", "-abort_on", "FATAL", *args], check=True,
                         capture_output=True, text=True)
    return out.stdout


def listing(iso):
    rows = []
    for line in xorriso("-indev", iso, "-find", "/", "-exec", "lsdl", "--").splitlines():
        m = re.match(r"^(\S)\S*\s+\d+\s+\S+\s+\S+\s+(\d+)\s+\S+\s+\d+\s+\S+\s+'(.*?)'(?: -> '(.*)')?$", line)
        if not m:
            continue
        kind, size, path, target = m.groups()
        if path == "/":
            continue
        if kind == "d":
            rows.append(f"d {path} -")
        elif kind == "l":
            rows.append(f"l {path} -> {target}")
        else:
            rows.append(f"- {path} {size}")
    return sorted(rows)


def sums(iso):
    d = tempfile.mkdtemp(prefix="isooracle-")
    try:
        xorriso("-osirrox", "on", "-indev", iso, "-extract", "/", d)
        out = []
        for root, _, files in os.walk(d):
            for f in files:
                p = os.path.join(root, f)
                if os.path.islink(p) or not os.path.isfile(p):
                    continue
                with open(p, "rb") as fh:
                    h = hashlib.sha256(fh.read()).hexdigest()
                out.append(f"{h} /{os.path.relpath(p, d)}")
        return sorted(out, key=lambda l: l.split(" ", 1)[1])
    finally:
        shutil.rmtree(d, ignore_errors=True)


def pvd(img):
    d = img[PVD:PVD + BLOCK]
    assert d[1:6] == b"CD001" and d[0] == 1, "no primary volume descriptor at block 16"
    return d


def volume(iso):
    d = pvd(open(iso, "rb").read())
    vid = d[40:72].decode("ascii", "replace").rstrip()
    blocks = struct.unpack_from("<I", d, 80)[0]
    bs = struct.unpack_from("<H", d, 128)[0]
    return f"{vid} {blocks} {bs}"


def records(img, lba, size):
    """(offset in img, name bytes, lba, size, flags) of each record of a directory."""
    out = []
    pos = lba * BLOCK
    end = pos + size
    while pos < end:
        n = img[pos]
        if n == 0:
            pos = (pos // BLOCK + 1) * BLOCK
            continue
        nl = img[pos + 32]
        name = bytes(img[pos + 33:pos + 33 + nl])
        out.append((pos, name, struct.unpack_from("<I", img, pos + 2)[0],
                    struct.unpack_from("<I", img, pos + 10)[0], img[pos + 25]))
        pos += n
    return out


def both32(img, at, v):
    struct.pack_into("<I", img, at, v)
    struct.pack_into(">I", img, at + 4, v)


def find(img, parent_lba, parent_size, iso_name):
    for pos, name, lba, size, _ in records(img, parent_lba, parent_size):
        if name.split(b";")[0].rstrip(b".") == iso_name:
            return pos, lba, size
    raise SystemExit(f"no record {iso_name!r}")


def damage(iso, out, how):
    img = bytearray(open(iso, "rb").read())
    d = pvd(img)
    root_lba = struct.unpack_from("<I", d, 158)[0]
    root_size = struct.unpack_from("<I", d, 166)[0]
    if how == "pvd":
        img[PVD + 130] ^= 0xff  # the big-endian half of the logical block size
    elif how == "loop":
        pos, _, _ = find(img, root_lba, root_size, b"BOOT")
        both32(img, pos + 2, root_lba)
    elif how == "extent":
        _, boot_lba, boot_size = find(img, root_lba, root_size, b"BOOT")
        pos, _, _ = find(img, boot_lba, boot_size, b"CAPMON.ELF")
        blocks = struct.unpack_from("<I", d, 80)[0]
        both32(img, pos + 2, blocks + 1000)
    else:
        raise SystemExit(f"unknown damage {how}")
    open(out, "wb").write(img)


def main():
    cmd, iso = sys.argv[1], sys.argv[2]
    if cmd == "listing":
        print("\n".join(listing(iso)))
    elif cmd == "sums":
        print("\n".join(sums(iso)))
    elif cmd == "volume":
        print(volume(iso))
    elif cmd == "damage":
        damage(iso, sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
