#!/usr/bin/env python3
"""boot_time.py --firmware bios|uefi [--runs N] [--timeout S] --case NAME ISO HEX [--case ...]

For each case, boots ISO under QEMU N times and measures the seconds from starting QEMU to the
first appearance of the bytes HEX on the serial console (e.g. 636170... for "capmon> ").
The cases' runs are interleaved (A B A B ...), so load from other work on the machine falls on
all of them alike. Prints each run as "NAME SECONDS", then "NAME median S min S" per case.
QEMU is killed as soon as the bytes appear. Exit 1 if a run does not get there within the
timeout. Environment: OVMF_CODE, OVMF_VARS_TEMPLATE, QEMU.
"""
import argparse
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def qemu_cmd(iso, firmware, vars_copy):
    cmd = [os.environ.get("QEMU", "qemu-system-x86_64"), "-accel", "tcg", "-machine", "q35",
           "-m", "256M", "-smp", "1", "-no-reboot", "-display", "none", "-monitor", "none",
           "-serial", "stdio"]
    if firmware == "uefi":
        code = os.environ.get("OVMF_CODE", "/usr/share/OVMF/OVMF_CODE_4M.fd")
        tmpl = os.environ.get("OVMF_VARS_TEMPLATE", code.replace("OVMF_CODE", "OVMF_VARS"))
        shutil.copyfile(tmpl, vars_copy)
        cmd += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
                "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]
    return cmd + ["-cdrom", iso]


def one_run(cmd, until, timeout):
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    seen = b""
    try:
        while True:
            left = timeout - (time.monotonic() - t0)
            if left <= 0:
                return None
            r, _, _ = select.select([p.stdout], [], [], left)
            if not r:
                continue
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                return None
            seen = seen[-len(until):] + chunk
            if until in seen:
                return time.monotonic() - t0
    finally:
        p.kill()
        p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--firmware", choices=["bios", "uefi"], default="bios")
    ap.add_argument("--case", nargs=3, action="append", required=True,
                    metavar=("NAME", "ISO", "HEX"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()
    times = {name: [] for name, _, _ in a.case}
    with tempfile.TemporaryDirectory() as d:
        for _ in range(a.runs):
            for name, iso, hexbytes in a.case:
                cmd = qemu_cmd(iso, a.firmware, os.path.join(d, "OVMF_VARS.fd"))
                t = one_run(cmd, bytes.fromhex(hexbytes), a.timeout)
                if t is None:
                    print(f"{name}: no {hexbytes} on the serial console within {a.timeout} s",
                          file=sys.stderr)
                    return 1
                print(f"{name} {t:.3f}", flush=True)
                times[name].append(t)
    for name, ts in times.items():
        print(f"{name} median {statistics.median(ts):.3f} min {min(ts):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
