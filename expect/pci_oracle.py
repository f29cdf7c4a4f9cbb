#!/usr/bin/env python3
"""QEMU's own view of the PCI topology (QMP `query-pci`), flattened to lines a Tcl proof parses.

    pci_oracle.py SOCKET

prints, for every function QEMU emulates (bridges' secondary buses included, depth first):

    fn BB:DD.F VVVV:DDDD CCCC irq IRQ pin PIN qdev ID    CCCC = base class and subclass, hex;
                                                          IRQ = the interrupt line register
                                                          (- when the pin is 0), ID (- if none)
    bar BB:DD.F N io|mem32|mem64 pref|- ADDR SIZE        ADDR hex or `unmapped`, SIZE hex
    rom BB:DD.F ADDR SIZE                                the expansion ROM (BAR slot 6)
    bridge BB:DD.F PRIMARY SECONDARY SUBORDINATE          hex bus numbers
    window BB:DD.F io|mem|pref BASE LIMIT                 only windows that are open (base <= limit)

Segment is always 0000 (QEMU's query-pci knows one segment per host bridge; capmon's machines
have one). Exit status 1 and a message on stderr when QEMU cannot be asked.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmp import Qmp, QmpError  # noqa: E402

# QEMU reports an unmapped BAR (decoding disabled in the command register, or a ROM whose
# enable bit is clear) with address -1, i.e. all ones.
UNMAPPED = (1 << 64) - 1
ROM_SLOT = 6


def bdf(bus, d):
    return f"{bus:02x}:{d['slot']:02x}.{d['function']:x}"


def addr(a):
    return "unmapped" if a in (-1, UNMAPPED) else f"{a:#x}"


def walk(bus, devices, out):
    for d in devices:
        b = bdf(bus, d)
        pin = d.get("irq_pin", 0)
        irq = d.get("irq", "-") if pin else "-"
        out.append(
            f"fn {b} {d['id']['vendor']:04x}:{d['id']['device']:04x} "
            f"{d['class_info']['class']:04x} irq {irq} pin {pin} qdev {d.get('qdev_id') or '-'}"
        )
        for r in d.get("regions", []):
            if r["bar"] == ROM_SLOT:
                out.append(f"rom {b} {addr(r['address'])} {r['size']:#x}")
                continue
            if r["type"] == "io":
                kind = "io"
            else:
                kind = "mem64" if r.get("mem_type_64") else "mem32"
            pref = "pref" if r.get("prefetch") else "-"
            out.append(f"bar {b} {r['bar']} {kind} {pref} {addr(r['address'])} {r['size']:#x}")
        br = d.get("pci_bridge")
        if br is None:
            continue
        info = br["bus"]
        out.append(
            f"bridge {b} {info['number']:02x} {info['secondary']:02x} {info['subordinate']:02x}"
        )
        for name, key in (("io", "io_range"), ("mem", "memory_range"),
                          ("pref", "prefetchable_range")):
            rng = info.get(key)
            if rng and rng["base"] <= rng["limit"]:
                out.append(f"window {b} {name} {rng['base']:#x} {rng['limit']:#x}")
        walk(info["secondary"], br.get("devices", []), out)


def main(argv):
    if len(argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    buses = Qmp(argv[0]).execute("query-pci")
    out = []
    for b in buses:
        walk(b["bus"], b["devices"], out)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (QmpError, KeyError, TypeError, OSError) as e:
        print(f"pci_oracle: {e}", file=sys.stderr)
        sys.exit(1)
