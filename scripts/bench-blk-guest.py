#!/usr/bin/env python3
"""Runs one QEMU guest for scripts/bench-blk.sh and keeps its serial transcript.

  bench-blk-guest.py --log FILE --timeout S [--cmd-timeout S] [--cmd CMD ...] -- QEMU ARGS...

With --cmd (capmon): waits for the `capmon> ` prompt, types each command, waits for the prompt
to come back after each, then types `poweroff`. Without (the Linux guest, whose init runs the
measurements and powers off): waits for QEMU to exit. Every wait is bounded; QEMU is killed
whatever happened. The transcript (CRs dropped) goes to FILE. Exit status: 0 if QEMU exited by
itself with status 0 within the bounds, 1 otherwise (the reason on stderr).
"""
import argparse
import os
import selectors
import subprocess
import sys
import time

PROMPT = b"capmon> "


class Guest:
    def __init__(self, argv, log):
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.log = log
        self.buf = b""  # output not yet matched against a prompt
        self.eof = False

    def read_some(self, deadline):
        """Reads what QEMU printed until `deadline`; False at EOF or when the time is up."""
        left = deadline - time.monotonic()
        if left <= 0 or self.eof:
            return False
        for _key, _ev in self.sel.select(timeout=min(left, 1.0)):
            data = os.read(self.proc.stdout.fileno(), 65536)
            if not data:
                self.eof = True
                return False
            self.log.write(data.replace(b"\r", b""))
            self.log.flush()
            self.buf += data
        return True

    def wait_prompt(self, seconds):
        deadline = time.monotonic() + seconds
        while PROMPT not in self.buf:
            if not self.read_some(deadline):
                return False
        self.buf = self.buf.split(PROMPT)[-1]
        return True

    def type(self, line):
        self.buf = b""
        self.proc.stdin.write(line.encode() + b"\r")
        self.proc.stdin.flush()

    def wait_exit(self, seconds):
        deadline = time.monotonic() + seconds
        while self.read_some(deadline) or (not self.eof and time.monotonic() < deadline):
            pass
        try:
            return self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True)
    ap.add_argument("--timeout", type=float, default=300, help="boot (and overall) bound, s")
    ap.add_argument("--cmd-timeout", type=float, default=120, help="bound per command, s")
    ap.add_argument("--cmd", action="append", default=[])
    ap.add_argument("qemu", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    argv = a.qemu[1:] if a.qemu[:1] == ["--"] else a.qemu
    if not argv:
        ap.error("no QEMU command line after --")
    with open(a.log, "wb") as log:
        g = Guest(argv, log)
        try:
            if a.cmd:
                if not g.wait_prompt(a.timeout):
                    print(f"no capmon prompt within {a.timeout:.0f} s", file=sys.stderr)
                    return 1
                for c in a.cmd:
                    g.type(c)
                    if not g.wait_prompt(a.cmd_timeout):
                        print(f"'{c}': no prompt within {a.cmd_timeout:.0f} s", file=sys.stderr)
                        return 1
                g.type("poweroff")
                rc = g.wait_exit(60)
            else:
                rc = g.wait_exit(a.timeout)
            if rc is None:
                print(f"QEMU still running after the time bound", file=sys.stderr)
                return 1
            if rc != 0:
                print(f"QEMU exited with status {rc}", file=sys.stderr)
                return 1
            return 0
        finally:
            g.kill()


if __name__ == "__main__":
    sys.exit(main())
