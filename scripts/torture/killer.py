#!/usr/bin/env python3
"""Runs a command in a session of its own and SIGKILLs every process of that session at a chosen moment.

usage: killer.py --delay SECONDS [--on-save TEXT [--skip-saves K] [--save-window SECONDS]] [--log FILE] -- COMMAND...

--delay: kill this many seconds after the start.
--on-save: instead, wait until a process of the session holds an open file whose /proc/PID/fd link contains TEXT
  and is an unnamed (O_TMPFILE, "(deleted)") or hidden temporary file -- i.e. it is writing a checkpoint -- then kill
  after a random delay in [0, --save-window]. If no save is seen within --delay seconds, kill then anyway.
Prints one line: "killed ELAPSED" or "finished RC ELAPSED" (the command ended by itself before the kill), plus
"stray N" when N processes of the session were still alive after the process-group kill (they are killed too).
Exit status 0 unless the launcher itself failed.
"""
import argparse, os, random, signal, subprocess, sys, time


def session_pids(sid):
    """Pids of live processes whose session id is `sid` (mpirun's ranks included, whatever their process group)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read().decode("latin-1")
        except OSError:
            continue
        # Fields after the parenthesised command name: state ppid pgrp session ...
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(name))
    return pids


def saving(pids, text):
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if text in target and (target.endswith("(deleted)") or target.endswith(".tmp")):
                return True
    return False


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--delay", type=float, required=True)
    p.add_argument("--on-save")
    p.add_argument("--save-window", type=float, default=0.05)
    p.add_argument("--skip-saves", type=int, default=0)
    p.add_argument("--log", default=os.devnull)
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args()
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    with open(a.log, "ab") as log:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = start + a.delay
    if a.on_save:
        # Saves are counted as they start (the temporary appears); the kill falls inside save number --skip-saves.
        seen, was = 0, False
        while time.monotonic() < deadline and proc.poll() is None:
            now = saving(session_pids(proc.pid) or [proc.pid], a.on_save)
            if now and not was:
                seen += 1
                if seen > a.skip_saves:
                    time.sleep(random.uniform(0, a.save_window))
                    break
            was = now
            time.sleep(0.0005)
    else:
        remaining = deadline - time.monotonic()
        if remaining > 0:
            try:
                proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                pass
    if proc.poll() is not None:
        # Ended by itself: make sure nothing of its session outlives it either (an mpirun rank would).
        for pid in session_pids(proc.pid):
            os.kill(pid, signal.SIGKILL)
        print(f"finished {proc.returncode} {time.monotonic() - start:.3f}")
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    elapsed = time.monotonic() - start
    proc.wait()
    # Whatever left the process group but not the session (e.g. a daemonised helper) is killed as well.
    stray = 0
    for _ in range(200):
        left = session_pids(proc.pid)
        if not left:
            break
        stray = max(stray, len(left))
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)
    print(f"killed {elapsed:.3f}" + (f" stray {stray}" if stray else ""))


if __name__ == "__main__":
    main()
