"""Throw-away servers for the tests and benchmarks (dovecot, prosody): a real server run from a
configuration in a temporary folder as our child process, in a session of its own, so stopping it is
a signal to its whole process group and a wait, and it starts again on the same ports with the same
data (a server restart). Also: a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThrowAwayServer:
    """A server process: ``argv()`` starts it in the foreground; ``ready()`` answers once it serves;
    ``log`` is its own log. Its stdout and stderr go to ``root/stderr.log`` (a pipe nobody reads
    could fill up and block it)."""

    name = "server"
    host = "127.0.0.1"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc: asyncio.subprocess.Process | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    async def ready(self) -> bool:
        raise NotImplementedError

    @property
    def log(self) -> str:
        return ""

    async def before_start(self) -> None:
        """What must be done before each start (accounts to register...)."""

    async def start(self, timeout: float = 15.0) -> None:
        assert self.proc is None, "already running"
        await self.before_start()
        stderr = os.open(self.root / "stderr.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv(), stdout=stderr, stderr=stderr, stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True)
        finally:
            os.close(stderr)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.proc.returncode is not None:
                err = (self.root / "stderr.log").read_text(errors="replace")
                self.proc = None
                raise RuntimeError(f"{self.name} exited at start: {err}\n{self.log}")
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                if await self.ready():
                    return
            if loop.time() > deadline:
                raise RuntimeError(f"{self.name} did not come up in {timeout} s\n{self.log}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Stop it as a service manager does (systemd signals the whole control group): every process
        of the server gets SIGTERM, so clients are disconnected; then wait until the whole group is
        gone, so its ports and data are free, and make sure of it after a while."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        group = proc.pid  # start_new_session: the server leads its own process group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
            await proc.wait()
        for _ in range(200):
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return
            await asyncio.sleep(0.025)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def close(self) -> None:
        await self.stop()
