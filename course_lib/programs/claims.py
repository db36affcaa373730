"""A claim on a piece of shared work, so that two live processes never do the same piece.

A claim is a file made with an atomic exclusive create (``O_CREAT | O_EXCL``: of two processes that try
at once, exactly one succeeds), in a folder every process sees (the user cache, or a shared disk on a
cluster). While the work runs, a background thread renews the claim by touching the file. A claim
that nobody renewed for `lease_s` seconds belongs to a process that died; another process takes it
over by renaming it away first (only one rename of a file can succeed) and claiming afresh.

    with Claim(folder / "cell.claim", lease_s=600) as claim:
        if claim.held:
            ...   # do the work
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path


class Claim:
    def __init__(self, path: str | os.PathLike, *, lease_s: float = 600.0):
        if lease_s <= 0:
            raise ValueError(f"Claim: lease_s must be > 0 seconds, got {lease_s}.")
        self.path, self.lease_s = Path(path), float(lease_s)
        self.token = uuid.uuid4().hex              # this claim's owner, unique per process and thread
        self.held, self.took_over = False, False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            json.dump({"token": self.token, "host": socket.gethostname(), "pid": os.getpid(),
                       "since": time.time()}, fh)
        return True

    def acquire(self) -> bool:
        """Claim the work: True if this process now holds it, False if a live process does."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self._create():
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:               # released just now: try once more
                age = None
            if age is not None and age < self.lease_s:
                return False
            if age is not None:                     # expired: its process died; take the claim over
                expired = self.path.with_name(f"{self.path.name}.expired-{self.token}")
                try:
                    os.rename(self.path, expired)   # of several takers, one rename succeeds
                except FileNotFoundError:
                    return False
                expired.unlink(missing_ok=True)
                self.took_over = True
            if not self._create():
                return False
        self.held = True
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, daemon=True, name=f"claim {self.path.name}")
        self._renewer.start()
        return True

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                return

    def owner(self) -> dict:
        """What the claim file says of its holder (empty if it is gone or unreadable)."""
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        """Stop renewing and remove the claim, if it is still ours."""
        if not self.held:
            return
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if self.owner().get("token") == self.token:
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> "Claim":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
