#!/usr/bin/env python3
"""Host side of capmon's block test patterns (drivers/block/src/pattern.rs).

The byte at absolute device offset x (= lba * sector_size + index in the sector) is:
  0xNN     the byte NN
  inc      x mod 256
  seed:N   byte (x mod 8), little-endian, of splitmix64(N, x // 8), where splitmix64(n, k)
           is the (k+1)-th output of splitmix64 seeded with n:
             z = n + (k + 1) * 0x9e3779b97f4a7c15            (mod 2^64)
             z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9         (mod 2^64)
             z = (z ^ (z >> 27)) * 0x94d049bb133111eb         (mod 2^64)
             z = z ^ (z >> 31)

Usage:
  blkpattern.py write  IMAGE PATTERN OFFSET LENGTH   write the pattern into a range of IMAGE
  blkpattern.py check  IMAGE PATTERN OFFSET LENGTH   compare a range of IMAGE with the pattern
  blkpattern.py sha256 PATTERN OFFSET LENGTH         SHA-256 of the pattern bytes of the range
  blkpattern.py imgsum IMAGE OFFSET LENGTH           SHA-256 of a range of IMAGE (like `blk sum`)
OFFSET and LENGTH are bytes (decimal or 0x hex, K/M/G suffixes) or sectors with an `s` suffix
(`2048s`), sectors being --sector-size bytes (default 512).
`check` prints `OK <n> bytes` and exits 0, or
`MISMATCH <count> bytes, first at <offset>: expected 0xNN, got 0xNN` and exits 1.
"""
import argparse
import hashlib
import struct
import sys

MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
CHUNK = 1 << 20


def splitmix64(n, k):
    z = (n + (k + 1) * GAMMA) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def number(s):
    return int(s, 16) if s.lower().startswith("0x") else int(s, 10)


def parse_pattern(s):
    if s == "inc":
        return ("inc", None)
    if s.startswith("seed:"):
        return ("seed", number(s[5:]))
    v = number(s)
    if not 0 <= v <= 255:
        raise ValueError("pattern byte must be at most 0xff")
    return ("byte", v)


def parse_amount(s, sector_size):
    s = s.strip()
    if s.endswith("s"):
        return number(s[:-1]) * sector_size
    shift = {"k": 10, "m": 20, "g": 30}.get(s[-1:].lower(), 0)
    if shift:
        s = s[:-1]
    return number(s) << shift


def pattern_bytes(pattern, offset, length):
    """The pattern's bytes at absolute offsets offset .. offset+length."""
    kind, arg = pattern
    if length <= 0:
        return b""
    if kind == "byte":
        return bytes([arg]) * length
    if kind == "inc":
        first = offset % 256
        reps = (first + length + 255) // 256
        return (bytes(range(256)) * reps)[first:first + length]
    k0 = offset // 8
    k1 = (offset + length + 7) // 8
    words = [splitmix64(arg, k) for k in range(k0, k1)]
    raw = struct.pack("<%dQ" % len(words), *words)
    skip = offset - k0 * 8
    return raw[skip:skip + length]


def chunks(offset, length):
    end = offset + length
    at = offset
    while at < end:
        n = min(CHUNK, end - at)
        yield at, n
        at += n


def cmd_write(a):
    with open(a.image, "r+b") as f:
        for at, n in chunks(a.offset, a.length):
            f.seek(at)
            f.write(pattern_bytes(a.pattern, at, n))
    print("wrote %d bytes" % a.length)
    return 0


def cmd_check(a):
    mismatches = 0
    first = None  # (offset, expected, got or None past the end of the image)
    with open(a.image, "rb") as f:
        for at, n in chunks(a.offset, a.length):
            f.seek(at)
            got = f.read(n)
            want = pattern_bytes(a.pattern, at, n)
            if got != want[:len(got)]:
                for i, (g, w) in enumerate(zip(got, want)):
                    if g != w:
                        mismatches += 1
                        if first is None:
                            first = (at + i, w, g)
            if len(got) < n:
                # The image ends inside the range: the missing bytes all count as mismatches.
                mismatches += n - len(got)
                if first is None:
                    first = (at + len(got), want[len(got)], None)
    if mismatches == 0:
        print("OK %d bytes" % a.length)
        return 0
    off, w, g = first
    got_s = "EOF" if g is None else "0x%02x" % g
    print("MISMATCH %d bytes, first at %d: expected 0x%02x, got %s" % (mismatches, off, w, got_s))
    return 1


def cmd_sha256(a):
    h = hashlib.sha256()
    for at, n in chunks(a.offset, a.length):
        h.update(pattern_bytes(a.pattern, at, n))
    print(h.hexdigest())
    return 0


def cmd_imgsum(a):
    h = hashlib.sha256()
    with open(a.image, "rb") as f:
        f.seek(a.offset)
        left = a.length
        while left > 0:
            b = f.read(min(CHUNK, left))
            if not b:
                print("image ends before the range does", file=sys.stderr)
                return 1
            h.update(b)
            left -= len(b)
    print(h.hexdigest())
    return 0


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sector-size", type=int, default=512)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, has_image, has_pattern in (
        ("write", True, True),
        ("check", True, True),
        ("sha256", False, True),
        ("imgsum", True, False),
    ):
        s = sub.add_parser(name)
        if has_image:
            s.add_argument("image")
        if has_pattern:
            s.add_argument("pattern")
        s.add_argument("offset")
        s.add_argument("length")
    a = p.parse_args(argv)
    try:
        if hasattr(a, "pattern"):
            a.pattern = parse_pattern(a.pattern)
        a.offset = parse_amount(a.offset, a.sector_size)
        a.length = parse_amount(a.length, a.sector_size)
    except ValueError as e:
        p.error(str(e))
    return {"write": cmd_write, "check": cmd_check, "sha256": cmd_sha256, "imgsum": cmd_imgsum}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
