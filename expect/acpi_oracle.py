#!/usr/bin/env python3
"""The guest's ACPI tables read straight from guest memory by QEMU (QMP `pmemsave`), walked
here on the host: an oracle that shares no code with capmon's ACPI parser.

    acpi_oracle.py SOCKET DIR walk RSDP_ADDR|scan    one line per table, as `acpi` prints them
    acpi_oracle.py SOCKET DIR hex ADDR LEN           LEN bytes of guest memory, as hex

`walk` starts at the RSDP at RSDP_ADDR (or, with `scan`, at the first valid one in the BIOS
area 0xE0000-0xFFFFF, ACPI 6.5 §5.2.5.1), follows the XSDT (revision >= 2 and non-zero) or the
RSDT, every table they list, and the FADT's DSDT and FACS (its X_ fields first, §5.2.9):

    RSDP addr=0x.. len=20|36 rev=R checksum=ok|BAD
    SIG addr=0x.. len=N checksum=ok|BAD|n/a          (n/a: the FACS has no checksum)

DIR holds the memory snapshots (QEMU writes them; it must be an absolute path).
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmp import Qmp, QmpError  # noqa: E402

BIOS_AREA = (0xE0000, 0x20000)
MAX_TABLE = 1 << 20  # bounds a corrupt length field
MAX_TABLES = 64


class Mem:
    def __init__(self, qmp, directory):
        self.qmp = qmp
        self.dir = directory
        self.n = 0

    def read(self, addr, size):
        self.n += 1
        path = os.path.join(self.dir, f"pmem-{os.getpid()}-{self.n}.bin")
        self.qmp.execute("pmemsave", {"val": addr, "size": size, "filename": path})
        try:
            with open(path, "rb") as f:
                data = f.read()
        finally:
            os.unlink(path)
        if len(data) != size:
            raise QmpError(f"pmemsave {addr:#x}+{size}: got {len(data)} bytes")
        return data


def summed(b):
    return "ok" if sum(b) & 0xFF == 0 else "BAD"


def find_rsdp(mem):
    base, size = BIOS_AREA
    area = mem.read(base, size)
    for off in range(0, size - 20, 16):
        if area[off:off + 8] == b"RSD PTR " and sum(area[off:off + 20]) & 0xFF == 0:
            return base + off
    raise QmpError("no RSDP with a valid checksum in 0xE0000-0xFFFFF")


def table(mem, addr):
    """(signature, bytes) of the table at addr, whole length as its header says."""
    head = mem.read(addr, 8)
    sig = head[:4].decode("ascii", "replace")
    length = struct.unpack_from("<I", head, 4)[0]
    if not 8 <= length <= MAX_TABLE:
        raise QmpError(f"{sig} at {addr:#x}: implausible length {length}")
    return sig, mem.read(addr, length)


def walk(mem, rsdp_addr, out):
    r = mem.read(rsdp_addr, 36)
    if r[:8] != b"RSD PTR ":
        raise QmpError(f"no 'RSD PTR ' at {rsdp_addr:#x}")
    rev = r[15]
    rsdt = struct.unpack_from("<I", r, 16)[0]
    if rev >= 2:
        length = struct.unpack_from("<I", r, 20)[0]
        xsdt = struct.unpack_from("<Q", r, 24)[0]
        ok = summed(r[:20]) == "ok" and summed(r[:36]) == "ok"
        out.append(f"RSDP addr={rsdp_addr:#x} len={length} rev={rev} "
                   f"checksum={'ok' if ok else 'BAD'}")
    else:
        xsdt = 0
        out.append(f"RSDP addr={rsdp_addr:#x} len=20 rev={rev} checksum={summed(r[:20])}")
    root, entry = (xsdt, 8) if xsdt else (rsdt, 4)
    sig, body = table(mem, root)
    out.append(f"{sig} addr={root:#x} len={len(body)} checksum={summed(body)}")
    n = min((len(body) - 36) // entry, MAX_TABLES)
    fmt = "<Q" if entry == 8 else "<I"
    addrs = [struct.unpack_from(fmt, body, 36 + i * entry)[0] for i in range(n)]
    seen = set()
    for a in addrs:
        sig, body = table(mem, a)
        seen.add(a)
        out.append(f"{sig} addr={a:#x} len={len(body)} checksum={summed(body)}")
        if sig != "FACP":
            continue
        # FADT: FIRMWARE_CTRL @36, DSDT @40, X_FIRMWARE_CTRL @132, X_DSDT @140 (§5.2.9).
        facs, dsdt = struct.unpack_from("<II", body, 36)
        if len(body) >= 148:
            xfacs, xdsdt = struct.unpack_from("<QQ", body, 132)
            facs, dsdt = xfacs or facs, xdsdt or dsdt
        for p, has_sum in ((dsdt, True), (facs, False)):
            if p and p not in seen:
                seen.add(p)
                s, b = table(mem, p)
                out.append(f"{s} addr={p:#x} len={len(b)} "
                           f"checksum={summed(b) if has_sum else 'n/a'}")


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    mem = Mem(Qmp(argv[0]), os.path.abspath(argv[1]))
    os.makedirs(mem.dir, exist_ok=True)
    if argv[2] == "walk" and len(argv) == 4:
        start = find_rsdp(mem) if argv[3] == "scan" else int(argv[3], 0)
        out = []
        walk(mem, start, out)
        print("\n".join(out))
    elif argv[2] == "hex" and len(argv) == 5:
        print(mem.read(int(argv[3], 0), int(argv[4], 0)).hex())
    else:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (QmpError, ValueError, struct.error, OSError) as e:
        print(f"acpi_oracle: {e}", file=sys.stderr)
        sys.exit(1)
