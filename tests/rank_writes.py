"""Run a script and log every file it writes, creates, renames or removes under the working directory.

    torchrun ... tests/rank_writes.py LOG_DIR SCRIPT [ARGS ...]

Each process appends to LOG_DIR/rank<RANK>.log (RANK from torchrun, 0 without it) one line per
write, the path relative to the working directory. A Python audit hook sees the writes of the
script and every library it calls that go through Python (open for writing, os.open with write
flags, os.replace / rename, os.remove, os.mkdir...), so "only rank 0 writes" becomes checkable:
tests/test_ddp.py asserts that rank 1's log is empty.
"""

from __future__ import annotations

import os
import runpy
import sys

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
PATH_EVENTS = {"os.remove": 1, "os.rmdir": 1, "os.mkdir": 1, "os.rename": 2, "os.truncate": 1, "os.symlink": 2, "os.link": 2, "shutil.rmtree": 1}


def main() -> None:
    log_dir, script, *args = sys.argv[1:]
    root = os.path.realpath(os.getcwd())
    log = open(os.path.join(log_dir, f"rank{os.environ.get('RANK', '0')}.log"), "a", buffering=1)

    def under_root(path) -> str | None:
        if isinstance(path, int):
            return None
        try:
            full = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return None
        return os.path.relpath(full, root) if full == root or full.startswith(root + os.sep) else None

    def hook(event: str, hook_args: tuple) -> None:
        if event == "open":
            path, mode, flags = hook_args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool((flags or 0) & WRITE_FLAGS)
            paths = [path] if writing else []
        elif event in PATH_EVENTS:
            paths = list(hook_args[: PATH_EVENTS[event]])
        else:
            return
        for path in paths:
            rel = under_root(path)
            if rel is not None:
                log.write(f"{event} {rel}\n")

    sys.addaudithook(hook)
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))  # as `python SCRIPT` would
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
