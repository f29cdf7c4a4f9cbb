#!/usr/bin/env python3
"""How much host CPU a process burns over an interval (python3 stdlib only).

    idlecost.py PID SECONDS

Reads utime + stime (all threads, in clock ticks of os.sysconf('SC_CLK_TCK')) from
/proc/PID/stat before and after sleeping SECONDS, and prints

    idle cost: X.XX% of one core over S s

where X is CPU time / wall time * 100 (a process keeping two cores busy shows 200%) and S
the wall time measured. For a QEMU whose guest sits at an idle prompt this is what idling
costs: a guest that halts stays near 0 %, one that busy-polls near 100 %.
Exit status 1 and a message on stderr when PID does not exist or exits meanwhile.
"""
import os
import sys
import time


class CostError(Exception):
    pass


def stat_fields(pid):
    """The fields of /proc/PID/stat after `pid (comm)`: [0] is field 3 (state)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError as e:
        raise CostError(f"cannot read /proc/{pid}/stat: {e.strerror}") from e
    # comm may hold spaces and parentheses: split after the last ')'.
    rest = stat[stat.rfind(")") + 2:].split()
    if len(rest) < 20:
        raise CostError(f"/proc/{pid}/stat: too few fields")
    if rest[0] in ("Z", "X"):
        raise CostError(f"process {pid} has exited (state {rest[0]})")
    return rest


def cpu_ticks(pid):
    # utime and stime are fields 14 and 15 of proc(5).
    rest = stat_fields(pid)
    return int(rest[11]) + int(rest[12])


def start_time(pid):
    return stat_fields(pid)[19]  # field 22, starttime: tells a reused PID apart


def main(argv):
    if len(argv) == 1 and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 1
    try:
        pid = int(argv[0])
        seconds = float(argv[1])
    except ValueError as e:
        raise CostError(f"PID and SECONDS must be numbers: {e}") from e
    if pid <= 0:
        raise CostError(f"PID {pid} is not a process id")
    if not 0 < seconds <= 3600:
        raise CostError(f"SECONDS {seconds:g}: must be more than 0 and at most 3600")
    hz = os.sysconf("SC_CLK_TCK")
    t0 = cpu_ticks(pid)
    born = start_time(pid)
    w0 = time.monotonic()
    time.sleep(seconds)
    t1 = cpu_ticks(pid)
    w1 = time.monotonic()
    if start_time(pid) != born:
        raise CostError(f"process {pid} was replaced during the measurement")
    wall = w1 - w0
    pct = (t1 - t0) / hz / wall * 100.0
    print(f"idle cost: {pct:.2f}% of one core over {wall:.1f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except CostError as e:
        print(f"idlecost: {e}", file=sys.stderr)
        sys.exit(1)
