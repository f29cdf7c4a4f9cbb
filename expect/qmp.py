#!/usr/bin/env python3
"""Talks to QEMU's QMP socket once and prints the answer (python3 stdlib only).

    qmp.py SOCKET COMMAND [ARGS_JSON] [--field PATH]   any QMP command; prints its "return" as JSON
    qmp.py SOCKET hmp 'info mtree'                     human-monitor-command; prints its text
    qmp.py SOCKET qom-get QOM_PATH PROPERTY            one QOM property, bare
    qmp.py SOCKET qom-get QOM_PATH PROP1 PROP2 ...     several: `PROP VALUE` lines (one connection)

--field a.0.b picks a member of the answer (dict keys and list indexes, dot-separated).
A string or number answer (after --field, or from qom-get) prints bare: `GenuineIntel`, `6`,
`true`. Exit status 1 and a message on stderr when QEMU answers with an error or does not answer.
"""
import json
import socket
import sys
import time

TIMEOUT_S = 10.0


class QmpError(Exception):
    pass


class Qmp:
    def __init__(self, path, timeout=TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(path)
                break
            except OSError as e:
                self.sock.close()
                # QEMU creates the socket a moment after it starts: retry until the deadline.
                if time.monotonic() > deadline:
                    raise QmpError(f"cannot connect to {path}: {e}") from e
                time.sleep(0.1)
        self.buf = b""
        greeting = self._read()
        if "QMP" not in greeting:
            raise QmpError(f"unexpected greeting: {greeting}")
        self.execute("qmp_capabilities")

    def _read(self):
        """One JSON message; asynchronous events are skipped by the caller."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise QmpError("QEMU closed the QMP connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def execute(self, cmd, args=None):
        msg = {"execute": cmd, "id": "capmon"}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        for _ in range(10000):  # bounded: events before the answer are skipped
            r = self._read()
            if "event" in r:
                continue
            if "error" in r:
                e = r["error"]
                raise QmpError(f"{cmd}: {e.get('class', '?')}: {e.get('desc', '?')}")
            if "return" in r:
                return r["return"]
        raise QmpError(f"{cmd}: no answer")


def pick(value, path):
    for key in path.split(".") if path else []:
        if isinstance(value, list):
            try:
                value = value[int(key)]
            except (ValueError, IndexError) as e:
                raise QmpError(f"--field {path}: no element {key}") from e
        elif isinstance(value, dict):
            if key not in value:
                raise QmpError(f"--field {path}: no member {key}")
            value = value[key]
        else:
            raise QmpError(f"--field {path}: {key} is past a scalar")
    return value


def show(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return json.dumps(value, indent=1, sort_keys=True)


def main(argv):
    field = None
    if "--field" in argv:
        i = argv.index("--field")
        if i + 1 >= len(argv):
            raise QmpError("--field needs a PATH")
        field = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    if len(argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    path, cmd, rest = argv[0], argv[1], argv[2:]
    q = Qmp(path)
    if cmd == "hmp":
        out = q.execute("human-monitor-command", {"command-line": " ".join(rest)})
    elif cmd == "qom-get":
        if len(rest) < 2:
            raise QmpError("qom-get needs QOM_PATH PROPERTY...")
        if len(rest) > 2:
            for prop in rest[1:]:
                v = q.execute("qom-get", {"path": rest[0], "property": prop})
                print(f"{prop} {json.dumps(v) if isinstance(v, (dict, list)) else show(v)}")
            return 0
        out = q.execute("qom-get", {"path": rest[0], "property": rest[1]})
    else:
        args = json.loads(rest[0]) if rest else None
        out = q.execute(cmd, args)
    out = pick(out, field)
    text = show(out)
    sys.stdout.write(text if text.endswith("\n") or text == "" else text + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (QmpError, json.JSONDecodeError, OSError) as e:
        print(f"qmp: {e}", file=sys.stderr)
        sys.exit(1)
