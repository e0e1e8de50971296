"""`channelhub` subprocesses for the tests that need real processes: several serving one
database (tests/test_multiprocess.py), or one killed and started again (tests/test_durability.py)."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp

from connectors.wechat.settings import WeChatSettings
from core.config import Settings
from tests.conftest import ROOT
from tests.servers import free_port

# How long a child may take to answer /healthz (a bound for a loaded machine, not a speed check).
STARTUP_TIMEOUT = 90.0


@dataclass
class HubProcess:
    """A `channelhub` subprocess; ``url`` makes it usable wherever the tests take a server."""

    name: str
    proc: asyncio.subprocess.Process
    log_path: Path
    log_file: IO[bytes]
    url: str = ""

    def output(self) -> str:
        self.log_file.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def open_log(path: Path) -> IO[bytes]:
    return path.open("wb")


def child_env(settings: Settings, namespace: str, port: int | None) -> dict[str, str]:
    # Only what we choose: a developer's own CHANNELHUB_* variables must not change these processes.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANNELHUB_")}
    env.update({
        "CHANNELHUB_DATABASE_URL": settings.database_url,
        "CHANNELHUB_QUEUE_NAMESPACE": namespace,
        "CHANNELHUB_HOST": "127.0.0.1",
        "CHANNELHUB_LOG_LEVEL": "INFO",
        "CHANNELHUB_BUSY_AFTER": str(settings.busy_after),
        # As the test servers: no background purges or retention over the shared test database.
        "CHANNELHUB_PURGE_INTERVAL": str(settings.purge_interval),
        "PYTHONUNBUFFERED": "1",
    })
    if settings.redis_url is not None:
        env["CHANNELHUB_REDIS_URL"] = settings.redis_url
    if settings.operator_host:
        env["CHANNELHUB_OPERATOR_HOST"] = settings.operator_host
    if settings.secret_key:  # the channel credentials the test run stored must decrypt here too
        env["CHANNELHUB_SECRET_KEY"] = settings.secret_key
    if settings.probe_secret:  # the prober's marks (core.probes) are taken by these hubs too
        env["CHANNELHUB_PROBE_SECRET"] = settings.probe_secret
    wechat = settings.channel("wechat", WeChatSettings)
    env["CHANNELHUB_WECHAT_API_BASE"] = wechat.api_base
    env["CHANNELHUB_WECOM_API_BASE"] = wechat.wecom_api_base
    if port is not None:
        env["CHANNELHUB_PORT"] = str(port)
    # Each child its own SMTP receiver port (the embedded default, 2525, would be shared).
    env["CHANNELHUB_SMTP_HOST"] = "127.0.0.1"
    env["CHANNELHUB_SMTP_PORT"] = str(free_port())
    env["CHANNELHUB_IMAP_FOLLOW"] = "0"  # as the test servers (tests/conftest.py, start_server)
    # The children import the project from this checkout whatever their working directory is.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


async def spawn(name: str, args: list[str], env: dict[str, str], workdir: Path) -> HubProcess:
    log_path = workdir / f"{name}.log"
    log_file = open_log(log_path)
    # cwd: a scratch folder, so no .env file or ./var of the checkout is picked up.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "channelhub.cli", *args, env=env, cwd=workdir,
        stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=asyncio.subprocess.STDOUT,
    )
    return HubProcess(name, proc, log_path, log_file)


async def wait_healthy(hub: HubProcess, session: aiohttp.ClientSession) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_TIMEOUT
    while True:
        if hub.proc.returncode is not None:
            raise AssertionError(f"{hub.name} exited with {hub.proc.returncode} before it was ready")
        try:
            async with session.get(hub.url + "/healthz", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                if resp.status == 200 and (await resp.json()).get("ok"):
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        if loop.time() > deadline:
            raise AssertionError(f"{hub.name} did not answer /healthz within {STARTUP_TIMEOUT}s")
        await asyncio.sleep(0.1)


async def spawn_serve(settings: Settings, workdir: Path, name: str, *, port: int | None = None,
                      namespace: str | None = None) -> HubProcess:
    """A ``channelhub serve`` of the test's own on ``port`` (a free one by default), answering
    /healthz; a bus and queue namespace of its own unless given. One that does not come up is
    stopped before the error goes on (a test that failed so once left it running)."""
    port = port or free_port()
    hub = await spawn(name, ["serve"], child_env(settings, namespace or f"{settings.queue_namespace}-"
                                                 f"{uuid.uuid4().hex[:8]}", port), workdir)
    hub.url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(hub, session)
    except BaseException:
        await stop(hub)
        raise
    return hub


async def stop(hub: HubProcess) -> None:
    if hub.proc.returncode is None:
        hub.proc.terminate()
        try:
            await asyncio.wait_for(hub.proc.wait(), timeout=10)
        except TimeoutError:
            hub.proc.kill()
            await hub.proc.wait()
    hub.log_file.close()
