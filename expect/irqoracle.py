#!/usr/bin/env python3
"""Interrupt-controller state as QEMU has it, for the interrupt proofs (python3 stdlib only).

    irqoracle.py lapic SOCK [APIC_ID] [--mode xapic|x2apic]   a local APIC (HMP `info lapic`)
    irqoracle.py ioapic SOCK                                  the I/O APICs (HMP `info pic`)
    irqoracle.py msix SOCK ADDR N [--pba PBA_ADDR]            an MSI-X table in guest memory
    irqoracle.py cpus SOCK                                    `CPU-INDEX APIC-ID` per CPU

`irqoracle.py SUBCOMMAND --help` says what each prints. Values are the registers as the
guest reads them, under capmon's names. Exit status 1 and a message on stderr when QEMU
does not answer, answers with an error, or prints something this script cannot parse.
"""
import json
import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ beside the proofs
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmp import Qmp, QmpError  # noqa: E402

HELP = {
    "lapic": """irqoracle.py lapic SOCK [APIC_ID] [--mode xapic|x2apic]

The local APIC of the CPU with APIC ID APIC_ID (default: the first CPU), from HMP
`info lapic [APIC_ID]` plus the CPU's QOM properties. Prints `NAME VALUE` lines:

  CPU N                 QEMU's cpu-index of that CPU
  APIC_ID 0x..          its APIC ID (QOM apic-id), not shifted
  X2APIC_CPUID true|false   CPUID.1:ECX.x2APIC of that CPU (QOM property x2apic)
  MODE xAPIC|x2APIC     the mode the mode-dependent registers below are given for:
                        --mode, else x2APIC when the CPU has the feature
  VERSION 0x........    version register: (number of LVT entries - 1) << 16 | lapic version
  LVT0 LVT1 LVTPC LVTERR LVTTHMR LVTT   the LVT registers, raw
  DCR TMICT             timer divide configuration, initial count
  SPIV ESR TPR PPR      spurious vector register, error status, task and processor priority
  LDR                   xAPIC: log_dest << 24; x2APIC: QEMU's x2APIC logical ID
                        ((id >> 4) << 16 | 1 << (id & 0xf)), which `info lapic` does not show
  DFR                   xAPIC only: dest_mode << 28 | 0x0fffffff
  volatile (not for comparison): TMCCT (current count, counts down), APR, ICR, ICR2,
  ISR and IRR (`none` or vectors in decimal, `(level)` marks), ISR/IRR/PPR change while
  an interrupt is in service.

QEMU never clears ESR (writes to it are ignored): it holds every error since reset.""",
    "ioapic": """irqoracle.py ioapic SOCK

Every I/O APIC in HMP `info pic` (q35 and pc print them in different orders; the PIC lines
are skipped). For each:

  ioapic I id 0x.. version 0x.. pins N
  pin P 0x%016x           the raw 64-bit redirection entry, one line per pin""",
    "msix": """irqoracle.py msix SOCK ADDR N [--pba PBA_ADDR]

N MSI-X table entries at guest-physical ADDR, read with HMP `xp /4wx` (16 bytes each:
address low, address high, data, vector control). Prints, for I = 0..N-1:

  entry I address 0x%016x data 0x%08x masked|unmasked [pending yes|no]

`pending` is printed with --pba: bit I of the pending-bit array at PBA_ADDR.""",
    "cpus": """irqoracle.py cpus SOCK

One `CPU-INDEX APIC-ID` line (both decimal) per CPU: query-cpus-fast gives the CPUs and
their QOM paths, qom-get PATH apic-id their APIC IDs.""",
}


class OracleError(Exception):
    pass


def hmp(q, cmdline, cpu_index=None):
    args = {"command-line": cmdline}
    if cpu_index is not None:
        args["cpu-index"] = cpu_index
    out = q.execute("human-monitor-command", args)
    # HMP reports its own errors as text, not as a QMP error.
    first = out.strip().split("\n", 1)[0] if out.strip() else ""
    if (first.startswith(("No CPU available", "unknown command", "invalid char"))
            or "has failed:" in first or "Try \"help" in out):
        raise OracleError(f"HMP '{cmdline}': {' | '.join(out.strip().splitlines())}")
    return out


def parse_int(text, what):
    try:
        v = int(text, 0)
    except ValueError as e:
        raise OracleError(f"{what} '{text}' is not a number") from e
    if v < 0:
        raise OracleError(f"{what} '{text}' is negative")
    return v


def cpus(q):
    """[(cpu-index, apic-id, qom-path)] of every CPU."""
    rows = []
    for c in q.execute("query-cpus-fast"):
        path = c["qom-path"]
        rows.append((c["cpu-index"], q.execute("qom-get", {"path": path, "property": "apic-id"}),
                     path))
    if not rows:
        raise OracleError("query-cpus-fast lists no CPU")
    return rows


LAPIC_LVT = ("LVT0", "LVT1", "LVTPC", "LVTERR", "LVTTHMR", "LVTT")


def parse_lapic(text):
    """The fields of `info lapic` (QEMU 8.1+ format, target/i386/cpu-dump.c)."""
    f = {}
    m = re.search(r"^dumping local APIC state for CPU (\d+)", text, re.M)
    if not m:
        raise OracleError(f"info lapic: no 'dumping local APIC state' line: {text.strip()[:200]}")
    f["CPU"] = int(m.group(1))
    for name in LAPIC_LVT:
        m = re.search(rf"^{name}\t 0x([0-9a-f]{{8}}) ", text, re.M)
        if not m:
            raise OracleError(f"info lapic: no {name} line")
        f[name] = int(m.group(1), 16)
    f["lvt_count"] = len(re.findall(r"^LVT\w+\t 0x", text, re.M))
    m = re.search(r"^Timer\t DCR=0x([0-9a-f]+) \(divide by \d+\) initial_count = (\d+)"
                  r"(?: current_count = (\d+))?", text, re.M)
    if not m:
        raise OracleError("info lapic: no Timer line")
    f["DCR"] = int(m.group(1), 16)
    f["TMICT"] = int(m.group(2))
    f["TMCCT"] = int(m.group(3)) if m.group(3) is not None else None
    for name in ("SPIV", "ICR", "ICR2", "ESR"):
        m = re.search(rf"^{name}\t 0x([0-9a-f]{{8}})", text, re.M)
        if not m:
            raise OracleError(f"info lapic: no {name} line")
        f[name] = int(m.group(1), 16)
    for name in ("ISR", "IRR"):
        m = re.search(rf"^{name}\t (.*)$", text, re.M)
        if not m:
            raise OracleError(f"info lapic: no {name} line")
        v = m.group(1).strip()
        f[name] = "none" if v == "(none)" else ",".join(v.split())
    m = re.search(r"^APR 0x([0-9a-f]+) TPR 0x([0-9a-f]+) DFR 0x([0-9a-f]+) LDR 0x([0-9a-f]+)"
                  r"(?:\(cluster \d+: id \d+\))? ?PPR 0x([0-9a-f]+)", text, re.M)
    if not m:
        raise OracleError("info lapic: no 'APR .. TPR .. DFR .. LDR .. PPR ..' line")
    f["APR"], f["TPR"], f["dest_mode"], f["log_dest"], f["PPR"] = (
        int(g, 16) for g in m.groups())
    return f


def cmd_lapic(q, args):
    mode = None
    if "--mode" in args:
        i = args.index("--mode")
        if i + 1 >= len(args) or args[i + 1] not in ("xapic", "x2apic"):
            raise OracleError("--mode needs xapic or x2apic")
        mode = args[i + 1]
        args = args[:i] + args[i + 2:]
    if len(args) > 1:
        raise OracleError(f"lapic: unexpected arguments {args[1:]}")
    all_cpus = cpus(q)
    if args:
        want = parse_int(args[0], "APIC_ID")
        match = [c for c in all_cpus if c[1] == want]
        if not match:
            raise OracleError(f"no CPU has APIC ID {want} (QEMU has: "
                              f"{', '.join(str(c[1]) for c in all_cpus)})")
        text = hmp(q, f"info lapic {want}")
    else:
        text = hmp(q, "info lapic", cpu_index=all_cpus[0][0])
    f = parse_lapic(text)
    cpu = [c for c in all_cpus if c[0] == f["CPU"]]
    if not cpu:
        raise OracleError(f"info lapic dumped CPU {f['CPU']}, which query-cpus-fast does not list")
    index, apic_id, path = cpu[0]
    if args and apic_id != want:
        raise OracleError(f"info lapic {want} dumped CPU {index}, whose APIC ID is {apic_id}")
    x2 = q.execute("qom-get", {"path": path, "property": "x2apic"})
    lapic_version = q.execute("qom-get", {"path": path + "/lapic", "property": "version"})
    if mode is None:
        mode = "x2apic" if x2 else "xapic"

    def reg(name, v):
        print(f"{name} 0x{v:08x}")

    print(f"CPU {index}")
    print(f"APIC_ID 0x{apic_id:x}")
    print(f"X2APIC_CPUID {'true' if x2 else 'false'}")
    print(f"MODE {'x2APIC' if mode == 'x2apic' else 'xAPIC'}")
    reg("VERSION", ((f["lvt_count"] - 1) << 16) | lapic_version)
    for name in LAPIC_LVT:
        reg(name, f[name])
    reg("DCR", f["DCR"])
    reg("TMICT", f["TMICT"])
    reg("SPIV", f["SPIV"])
    reg("ESR", f["ESR"])
    reg("TPR", f["TPR"])
    reg("PPR", f["PPR"])
    if mode == "x2apic":
        # hw/intc/apic_common.c: extended_log_dest, set at realize from the initial APIC ID.
        reg("LDR", ((apic_id >> 4) << 16) | (1 << (apic_id & 0xf)))
    else:
        reg("LDR", (f["log_dest"] & 0xff) << 24)
        reg("DFR", ((f["dest_mode"] & 0xf) << 28) | 0x0fffffff)
    if f["TMCCT"] is not None:
        reg("TMCCT", f["TMCCT"])
    reg("APR", f["APR"])
    reg("ICR", f["ICR"])
    reg("ICR2", f["ICR2"])
    print(f"ISR {f['ISR']}")
    print(f"IRR {f['IRR']}")


def cmd_ioapic(q, args):
    if args:
        raise OracleError(f"ioapic: unexpected arguments {args}")
    text = hmp(q, "info pic")
    cur = None
    found = []
    for line in text.splitlines():
        m = re.match(r"^ioapic(\d+): ver=0x([0-9a-f]+) id=0x([0-9a-f]+) ", line)
        if m:
            cur = {"n": int(m.group(1)), "ver": int(m.group(2), 16), "id": int(m.group(3), 16),
                   "pins": []}
            found.append(cur)
            continue
        m = re.match(r"^\s+pin\s+(\d+)\s+0x([0-9a-f]{16}) ", line)
        if m and cur is not None:
            pin = int(m.group(1))
            if pin != len(cur["pins"]):
                raise OracleError(f"info pic: ioapic{cur['n']} pin {pin} out of order")
            cur["pins"].append(int(m.group(2), 16))
        elif not line.startswith(" "):
            cur = None  # a pic0:/pic1: line ends an I/O APIC's block
    if not found:
        raise OracleError(f"info pic shows no I/O APIC: {text.strip()[:200]}")
    for a in found:
        if not a["pins"]:
            raise OracleError(f"info pic: ioapic{a['n']} has no pin lines")
        print(f"ioapic {a['n']} id 0x{a['id']:x} version 0x{a['ver']:x} pins {len(a['pins'])}")
        for i, v in enumerate(a["pins"]):
            print(f"pin {i} 0x{v:016x}")


def xp_words(q, addr, count):
    """COUNT 32-bit words of guest-physical memory from ADDR (HMP xp /Nwx)."""
    text = hmp(q, f"xp /{count}wx 0x{addr:x}")
    words = []
    for line in text.splitlines():
        m = re.match(r"^([0-9a-f]+): ((?:0x[0-9a-f]{8} ?)+)$", line.strip())
        if not m:
            raise OracleError(f"xp: unexpected line '{line}'")
        if int(m.group(1), 16) != addr + 4 * len(words):
            raise OracleError(f"xp: line at {m.group(1)}, expected 0x{addr + 4 * len(words):x}")
        words += [int(w, 16) for w in m.group(2).split()]
    if len(words) != count:
        raise OracleError(f"xp /{count}wx 0x{addr:x}: got {len(words)} words")
    return words


def cmd_msix(q, args):
    pba = None
    if "--pba" in args:
        i = args.index("--pba")
        if i + 1 >= len(args):
            raise OracleError("--pba needs an address")
        pba = parse_int(args[i + 1], "PBA_ADDR")
        args = args[:i] + args[i + 2:]
    if len(args) != 2:
        raise OracleError("msix needs ADDR N")
    addr = parse_int(args[0], "ADDR")
    n = parse_int(args[1], "N")
    if not 1 <= n <= 2048:
        raise OracleError(f"N {n}: an MSI-X table has 1 to 2048 entries")
    if addr % 8:
        raise OracleError(f"ADDR 0x{addr:x}: an MSI-X table is 8-byte aligned")
    w = xp_words(q, addr, 4 * n)
    pending = None
    if pba is not None:
        pending = xp_words(q, pba, (n + 31) // 32)
    for i in range(n):
        lo, hi, data, ctrl = w[4 * i:4 * i + 4]
        line = (f"entry {i} address 0x{(hi << 32) | lo:016x} data 0x{data:08x} "
                f"{'masked' if ctrl & 1 else 'unmasked'}")
        if pending is not None:
            line += f" pending {'yes' if (pending[i // 32] >> (i % 32)) & 1 else 'no'}"
        print(line)


def cmd_cpus(q, args):
    if args:
        raise OracleError(f"cpus: unexpected arguments {args}")
    for index, apic_id, _ in cpus(q):
        print(f"{index} {apic_id}")


COMMANDS = {"lapic": cmd_lapic, "ioapic": cmd_ioapic, "msix": cmd_msix, "cpus": cmd_cpus}


def main(argv):
    if not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 1
    if argv[0] in ("-h", "--help", "help"):
        print(__doc__.strip())
        return 0
    sub = argv[0]
    if sub not in COMMANDS:
        raise OracleError(f"unknown subcommand '{sub}' (known: {', '.join(COMMANDS)})")
    if "-h" in argv[1:] or "--help" in argv[1:]:
        print(HELP[sub])
        return 0
    if len(argv) < 2:
        raise OracleError(f"{sub} needs SOCK (see irqoracle.py {sub} --help)")
    q = Qmp(argv[1])
    COMMANDS[sub](q, argv[2:])
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (OracleError, QmpError, json.JSONDecodeError, OSError, KeyError) as e:
        print(f"irqoracle: {e}", file=sys.stderr)
        sys.exit(1)
