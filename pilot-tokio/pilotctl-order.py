#!/usr/bin/env python3
"""Regenerates pilot-tokio/pilotctl.order, the linker symbol-ordering file of the deployable
daemon (README.md, "Build and install the daemon").

Why: the kernel maps a file-backed page fault together with its cached neighbours (64 KiB
fault-around), so an idle daemon that ran ~1.2 MiB of scattered functions at start-up kept
~5 MiB of pilotctl's text resident. Listing the functions the daemon runs from start to
"registered and idle" lets lld place them next to each other; nothing else changes.

What it does: builds the daemon binary with symbols (`cargo rustc --profile daemon ... -- -C
strip=none`, same RUSTFLAGS as the deploy build, so the symbol names match), starts a
loopback rendezvous, runs `pilotctl daemon run --public` under `valgrind --tool=callgrind` until
it is registered, answers `pilotctl info` and has idled for 12 s, then writes every function with an executed
instruction (plus the AVX-512 variants of the glibc string functions it ran: valgrind has no
AVX-512, the real CPU may pick those).

Needs: Linux x86_64 glibc, valgrind, nm (binutils), python3. Run it from anywhere:
    python3 pilot-tokio/pilotctl-order.py
then rebuild with the README command. Regenerate after a toolchain or dependency update (symbol
names carry hashes that then change); a stale file only costs memory (unknown names are
ignored), never correctness. The perf table's idle RSS row shows when it is needed.
"""

import bisect
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORDER = os.path.join(ROOT, "pilot-tokio", "pilotctl.order")
TARGET = "x86_64-unknown-linux-gnu"
RUSTFLAGS = (
    "-C target-feature=+crt-static "
    "-C link-arg=-Wl,-z,pack-relative-relocs "
    "-C link-arg=-Wl,--symbol-ordering-file=pilot-tokio/pilotctl.order "
    "-C link-arg=-Wl,--no-warn-symbol-ordering"
)


def build():
    env = dict(os.environ, RUSTFLAGS=RUSTFLAGS)
    env.pop("CARGO_ENCODED_RUSTFLAGS", None)
    cmd = ["cargo", "rustc", "--profile", "daemon", "--target", TARGET,
           "-p", "pilot-tokio", "--bin", "pilotctl", "--", "-C", "strip=none"]
    print("+ RUSTFLAGS=%r %s" % (RUSTFLAGS, " ".join(cmd)), file=sys.stderr)
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    target_dir = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target_dir, TARGET, "daemon", "pilotctl")


def profile(exe, work):
    """Runs rendezvous + daemon (under callgrind); returns the callgrind output path."""
    rv = subprocess.Popen(
        [exe, "--home", os.path.join(work, "rv"), "--log-level", "warn", "--json",
         "rendezvous", "--registry-listen", "127.0.0.1:0", "--beacon-listen", "127.0.0.1:0",
         "--state-dir", os.path.join(work, "rv", "state")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = os.path.join(work, "callgrind.out")
    home = os.path.join(work, "d1")
    daemon = None
    try:
        addrs = json.loads(rv.stdout.readline())["data"]
        daemon = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--dump-instr=yes", "--demangle=no",
             "--callgrind-out-file=" + out, exe, "--home", home,
             # The default log level (info): its lifecycle lines are part of a normal start.
             "daemon", "run", "--registry", addrs["registry"], "--beacon", addrs["beacon"],
             "--public", "--listen", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 180
        while True:
            info = subprocess.run([exe, "--home", home, "info"], capture_output=True)
            if info.returncode == 0:
                break
            if time.time() > deadline or daemon.poll() is not None:
                sys.exit("the daemon did not come up under valgrind")
            time.sleep(0.5)
        # A few IPC sessions that start and end, then idle past tokio's 10 s blocking-thread
        # keep-alive: the idle daemon the perf table measures has been through both.
        for _ in range(3):
            subprocess.run([exe, "--home", home, "info"], capture_output=True)
            time.sleep(1)
        time.sleep(12)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=120)
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        rv.kill()
        rv.wait()
    return out


def executed_addresses(callgrind_out, exe_name):
    """Instruction addresses executed in the object named exe_name."""
    objects, current, last, addrs = {}, None, 0, set()
    with open(callgrind_out) as f:
        for line in f:
            if line.startswith(("ob=", "cob=")):
                m = re.match(r"c?ob=\((\d+)\)(?: (.*))?", line.strip())
                if m.group(2):
                    objects[m.group(1)] = m.group(2)
                if line.startswith("ob="):
                    current = objects.get(m.group(1), "")
                continue
            if not line or line[0] not in "0123456789+-*":
                continue
            tok = line.split()[0]
            try:
                if tok.startswith("0x"):
                    a = int(tok, 16)
                elif tok[0] in "+-":
                    a = last + int(tok, 0)
                elif tok == "*":
                    a = last
                else:
                    continue
            except ValueError:
                continue
            last = a
            if current and os.path.basename(current) == exe_name:
                addrs.add(a)
    return addrs


def main():
    exe_built = build()
    work = tempfile.mkdtemp(prefix="pilotctl-order.")
    try:
        exe = os.path.join(work, "pilotctl")
        shutil.copy(exe_built, exe)
        addrs = executed_addresses(profile(exe, work), "pilotctl")
        nm = subprocess.run(["nm", "-S", "--defined-only", exe], capture_output=True,
                            text=True, check=True).stdout
    finally:
        shutil.rmtree(work, ignore_errors=True)
    syms = []
    for line in nm.splitlines():
        p = line.split()
        if len(p) == 4 and p[2] in "tTwW":
            syms.append((int(p[0], 16), int(p[1], 16), p[3]))
    syms.sort()
    starts = [s[0] for s in syms]
    hit = {}
    for a in addrs:
        i = bisect.bisect_right(starts, a) - 1
        if i >= 0 and syms[i][0] <= a < syms[i][0] + max(syms[i][1], 1):
            hit[syms[i][2]] = syms[i][0]
    names = sorted(hit, key=hit.get)
    # glibc string functions are picked per CPU (ifunc); valgrind reports no AVX-512.
    extra = set()
    for n in names:
        m = re.match(r"^(__[a-z0-9]+?)_(avx2|avx|sse2|sse4_2|ssse3)", n)
        if m:
            extra.update(s[2] for s in syms
                         if s[2].startswith(m.group(1) + "_") and re.search("evex|avx512", s[2]))
    names += sorted(extra - set(names))
    with open(ORDER, "w") as f:
        f.write("# Functions `pilotctl daemon run` executes from start to registered and idle,\n"
                "# placed together by lld. Generated by pilot-tokio/pilotctl-order.py.\n")
        f.write("\n".join(names) + "\n")
    # Cargo does not track the file a link argument names: make it relink pilotctl.
    os.utime(os.path.join(ROOT, "pilot-tokio", "src", "bin", "pilotctl.rs"))
    print("%s: %d functions; now rebuild (README.md)" % (ORDER, len(names)), file=sys.stderr)


if __name__ == "__main__":
    main()
