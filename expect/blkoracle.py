#!/usr/bin/env python3
"""Host-side oracles for the block proofs (expect/blk*.exp); python3 stdlib only.

Every answer is `KEY VALUE` lines, easy to read from Tcl.

    blkoracle.py drive SOCKET DRIVE_ID
        QMP query-block of one drive: `size <virtual-size bytes>`, `ro true|false`,
        `file <path>`, `qdev <QOM path of the device model>`
    blkoracle.py pci SOCKET QDEV_ID
        QMP query-pci of the function with that id: `bdf 0000:BB:DD.F`, `vendor 0xVVVV`,
        `device 0xDDDD`, `subvendor 0xVVVV`, `subsystem 0xDDDD`
    blkoracle.py stats SOCKET DRIVE_ID...
        QMP query-blockstats summed over the drives (QEMU's block accounting, which NVMe
        SMART data reports): `rd_bytes`, `wr_bytes`, `rd_ops`, `wr_ops`, `flush_ops`,
        `failed_rd_ops`, `failed_wr_ops`
    blkoracle.py virtio SOCKET QOM_PATH
        QMP x-query-virtio-status: `guest NAME...` and `host NAME...` (feature names as
        capmon prints them: VIRTIO_BLK_F_FLUSH -> FLUSH), `status NAME...`, `num-vqs N`
    blkoracle.py queue SOCKET QOM_PATH QUEUE
        QMP x-query-virtio-queue-status: `size`, `last-avail-idx`, `shadow-avail-idx`,
        `used-idx` (QEMU's own view of the ring)
    blkoracle.py part IMAGE N
        `sgdisk -i N IMAGE`: `first`, `last`, `sectors`, `type` (GUID), `guid`, `name`
    blkoracle.py put IMAGE FILE_OFFSET PATTERN DEV_OFFSET LENGTH
        writes the bytes scripts/blkpattern.py's PATTERN has at device offsets
        DEV_OFFSET.. into IMAGE at FILE_OFFSET.. (a partition's pattern lands at the
        partition's start in the file); offsets and lengths in bytes or `Ns` sectors
    blkoracle.py same IMAGE_A IMAGE_B
        `same` when both files are equal, else `differ <n> sectors, first at byte <off>`
        (exit status 1)
"""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "scripts"))

import blkpattern  # noqa: E402  (scripts/blkpattern.py: the pattern definition)
from qmp import Qmp, QmpError  # noqa: E402

SECTOR = 512
CHUNK = 1 << 20


def kv(pairs):
    for k, v in pairs:
        print(f"{k} {v}")


def feature_names(group):
    """`VIRTIO_BLK_F_FLUSH: Flush command supported` -> `FLUSH` (capmon's names)."""
    names = []
    for item in group.get("dev-features", []) + group.get("transports", []):
        full = item.split(":", 1)[0].strip()
        names.append(re.sub(r"^(VIRTIO_BLK_F_|VIRTIO_RING_F_|VIRTIO_F_|VHOST_USER_F_)", "", full))
    return names


def cmd_drive(sock, drive_id):
    for d in Qmp(sock).execute("query-block"):
        if d.get("device") == drive_id:
            ins = d.get("inserted")
            if ins is None:
                raise QmpError(f"drive {drive_id} has no medium")
            kv([
                ("size", ins["image"]["virtual-size"]),
                ("ro", "true" if ins["ro"] else "false"),
                ("file", ins["file"]),
                ("qdev", d.get("qdev", "")),
            ])
            return 0
    raise QmpError(f"query-block: no drive {drive_id}")


def cmd_pci(sock, qdev_id):
    for bus in Qmp(sock).execute("query-pci"):
        for d in bus["devices"]:
            if d.get("qdev_id") == qdev_id:
                kv([
                    ("bdf", "0000:%02x:%02x.%x" % (d["bus"], d["slot"], d["function"])),
                    ("vendor", "0x%04x" % d["id"]["vendor"]),
                    ("device", "0x%04x" % d["id"]["device"]),
                    ("subvendor", "0x%04x" % d["id"].get("subsystem-vendor", 0)),
                    ("subsystem", "0x%04x" % d["id"].get("subsystem", 0)),
                ])
                return 0
    raise QmpError(f"query-pci: no function with id {qdev_id}")


STATS = [
    ("rd_bytes", "rd_bytes"),
    ("wr_bytes", "wr_bytes"),
    ("rd_ops", "rd_operations"),
    ("wr_ops", "wr_operations"),
    ("flush_ops", "flush_operations"),
    ("failed_rd_ops", "failed_rd_operations"),
    ("failed_wr_ops", "failed_wr_operations"),
]


def cmd_stats(sock, *drive_ids):
    want = set(drive_ids)
    total = {k: 0 for k, _ in STATS}
    for d in Qmp(sock).execute("query-blockstats"):
        if d.get("device") in want:
            want.discard(d["device"])
            for k, q in STATS:
                total[k] += d["stats"][q]
    if want:
        raise QmpError(f"query-blockstats: no drive {' '.join(sorted(want))}")
    kv(total.items())
    return 0


def cmd_virtio(sock, path):
    s = Qmp(sock).execute("x-query-virtio-status", {"path": path})
    statuses = [x.split(":", 1)[0].replace("VIRTIO_CONFIG_S_", "") for x in s["status"]["statuses"]]
    kv([
        ("guest", " ".join(sorted(feature_names(s["guest-features"])))),
        ("host", " ".join(sorted(feature_names(s["host-features"])))),
        ("status", " ".join(statuses)),
        ("num-vqs", s["num-vqs"]),
    ])
    return 0


def cmd_queue(sock, path, queue):
    q = Qmp(sock).execute("x-query-virtio-queue-status", {"path": path, "queue": int(queue)})
    kv([
        ("size", q["vring-num"]),
        ("last-avail-idx", q["last-avail-idx"]),
        ("shadow-avail-idx", q["shadow-avail-idx"]),
        ("used-idx", q["used-idx"]),
    ])
    return 0


def cmd_part(image, n):
    out = subprocess.run(["sgdisk", "-i", str(n), image], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    fields = {
        "first": r"^First sector: (\d+)",
        "last": r"^Last sector: (\d+)",
        "sectors": r"^Partition size: (\d+) sectors",
        "type": r"^Partition GUID code: ([0-9A-Fa-f-]{36})",
        "guid": r"^Partition unique GUID: ([0-9A-Fa-f-]{36})",
        "name": r"^Partition name: '(.*)'$",
    }
    for k, rx in fields.items():
        m = re.search(rx, out, re.M)
        if not m:
            raise ValueError(f"sgdisk -i {n} {image}: no {k} in: {out.strip()}")
        v = m.group(1)
        print(f"{k} {v.lower() if k in ('type', 'guid') else v}")
    return 0


def cmd_put(image, file_off, pattern, dev_off, length):
    pat = blkpattern.parse_pattern(pattern)
    file_off = blkpattern.parse_amount(file_off, SECTOR)
    dev_off = blkpattern.parse_amount(dev_off, SECTOR)
    length = blkpattern.parse_amount(length, SECTOR)
    with open(image, "r+b") as f:
        for at, n in blkpattern.chunks(dev_off, length):
            f.seek(file_off + (at - dev_off))
            f.write(blkpattern.pattern_bytes(pat, at, n))
    print(f"wrote {length}")
    return 0


def cmd_same(a, b):
    differ, first = 0, None
    with open(a, "rb") as fa, open(b, "rb") as fb:
        at = 0
        while True:
            x, y = fa.read(CHUNK), fb.read(CHUNK)
            if not x and not y:
                break
            if x != y:
                for i in range(0, max(len(x), len(y)), SECTOR):
                    if x[i:i + SECTOR] != y[i:i + SECTOR]:
                        differ += 1
                        if first is None:
                            first = at + i
            at += CHUNK
    if differ == 0:
        print("same")
        return 0
    print(f"differ {differ} sectors, first at byte {first} (LBA {first // SECTOR})")
    return 1


def main(argv):
    cmds = {
        "drive": (cmd_drive, 2),
        "pci": (cmd_pci, 2),
        "stats": (cmd_stats, -2),
        "virtio": (cmd_virtio, 2),
        "queue": (cmd_queue, 3),
        "part": (cmd_part, 2),
        "put": (cmd_put, 5),
        "same": (cmd_same, 2),
    }
    # A count of -N: N or more arguments.
    n = cmds[argv[0]][1] if argv and argv[0] in cmds else None
    if n is None or (len(argv) - 1 != n if n >= 0 else len(argv) - 1 < -n):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    fn, _ = cmds[argv[0]]
    return fn(*argv[1:])


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (QmpError, OSError, ValueError, KeyError, subprocess.SubprocessError) as e:
        print(f"blkoracle: {e}", file=sys.stderr)
        sys.exit(1)
