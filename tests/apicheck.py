"""schemathesis against a real hub: every route, with a token of each role (`make apicheck`).

Starts `channelhub serve` on a scratch SQLite database (PostgreSQL when CHANNELHUB_TEST_DATABASE_URL
names a server: a database of its own is made there and dropped), seeds a tenant served at
127.0.0.1 with an owner, an admin, a supervisor and an agent, a group, a routing rule, tickets with
messages and a web chat conversation (so that ids 1, 2, ... exist), signs each in and runs
``schemathesis run`` on /api/v1/openapi.json once per role; then the same for the operator's API
(/operator/v1/openapi.json on its host, ``localhost``) with an account of each staff role. The checks:

- not_a_server_error: no 5xx, whatever is sent;
- status_code_conformance: every status answered is one the document lists for the operation;
- content_type_conformance, response_schema_conformance: every answer is of the declared type and
  matches the declared schema (success and errors alike).

Routes that end the caller's sessions (sign out, sign out everywhere, a password change) and the
seat changes that revoke tokens (``PATCH /api/v1/agents/{agent_id}`` may deactivate or demote the
caller) run last, with a seat of their own, so that they cannot sign the other runs out.

    python -m tests.apicheck [--examples N] [--seed N] [--workers N] [--keep]

The output of each run is schemathesis' own; this exits non-zero when any run failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO, Any

import aiohttp
import asyncpg

from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "127.0.0.1"
PASSWORD = "apicheck-password-1"
ROLES = ("agent", "supervisor", "admin", "owner")
# The operator's API (/operator/v1/openapi.json) on its own host, with a token of each staff role.
OPERATOR_HOST = "localhost"
OPERATOR_ROLES = ("support", "billing", "owner")
OPERATOR_PASSWORD = "apicheck-operator-password"
# Operator operations that end a token or an account, or switch a subsystem off (after which that
# subsystem's routes answer 503 subsystem_offline, as they should): run last, under an account of their own.
OPERATOR_ENDERS = ("logout", "update_account", "switch_subsystem")
# What may end the token it is called with (operationIds): run last, under a seat of their own.
TOKEN_ENDERS = ("logout", "logout_all", "change_password", "update_agent")
CHECKS = ",".join((
    "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance",
))


def log(text: str) -> None:
    print(f"[apicheck] {text}", flush=True)


def cli(env: dict[str, str], workdir: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "channelhub.cli", *args], env=env, cwd=workdir,
                          input=stdin if stdin is not None else "", capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"channelhub {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def start_serve(env: dict[str, str], workdir: Path, log_file: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "channelhub.cli", "serve"], env=env, cwd=workdir,
                            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT)


async def wait_up(base: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"channelhub serve exited with {proc.returncode}")
            try:
                async with http.get(base + "/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("channelhub serve did not come up")


async def scratch_pg(url: str) -> tuple[str, str]:
    """A fresh database on the server of ``url`` (its own name), to drop afterwards."""


    name = f"apicheck_{uuid.uuid4().hex[:10]}"
    server = url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(server.rsplit("/", 1)[0] + "/postgres")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url.rsplit("/", 1)[0] + "/" + name, name


async def drop_pg(url: str, name: str) -> None:


    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://").rsplit("/", 1)[0] + "/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def seed(base: str) -> dict[str, str]:
    """Tokens of each role (and one for the token enders) after making a few of everything."""
    tokens: dict[str, str] = {}
    async with aiohttp.ClientSession() as http:
        for role in (*ROLES, "ender"):
            async with http.post(base + "/api/v1/auth/login",
                                 json={"email": f"{role}@apicheck.example", "password": PASSWORD}) as r:
                assert r.status == 200, (role, r.status, await r.text())
                tokens[role] = (await r.json())["token"]
        admin = {"Authorization": f"Bearer {tokens['admin']}"}

        async def call(method: str, path: str, body: Any, expect: int, headers: dict[str, str] = admin) -> Any:
            async with http.request(method, base + path, json=body, headers=headers) as r:
                data = await r.json()
                assert r.status == expect, (method, path, r.status, data)
                return data

        await call("POST", "/api/v1/routing/rules", {"name": "after hours", "conditions": {"business_hours": "outside"},
                                                     "actions": {"group_id": 1}}, 201)
        for n in range(3):
            ticket = await call("POST", "/api/v1/tickets", {"text": f"Phone call {n}", "subject": f"Call {n}",
                                                           "customer": {"name": f"Caller {n}",
                                                                        "email": f"caller{n}@apicheck.example"}}, 201)
            await call("POST", f"/api/v1/tickets/{ticket['ticket']['id']}/messages",
                       {"text": "Called back", "kind": "note"}, 201)
        visitor = "apicheck-visitor-0001"
        await call("POST", "/webchat/messages", {"visitor_id": visitor, "client_id": "m1", "text": "Hello?"}, 201,
                   headers={})
        async with http.post(base + "/api/v1/attachments?name=note.txt", data=b"a file",
                             headers={**admin, "Content-Type": "text/plain"}) as r:
            assert r.status == 201, await r.text()
    return tokens


async def operator_tokens(base: str) -> dict[str, str]:
    """A token of each operator role, and one for the operations that end tokens or accounts."""
    tokens: dict[str, str] = {}
    async with aiohttp.ClientSession() as http:
        for role in (*OPERATOR_ROLES, "ender"):
            async with http.post(base + "/operator/v1/auth/login", json={
                    "email": f"{role}@operator.apicheck.example", "password": OPERATOR_PASSWORD}) as r:
                assert r.status == 200, (role, r.status, await r.text())
                tokens[role] = (await r.json())["token"]
    return tokens


def schemathesis(schema_url: str, token: str, args: argparse.Namespace, workdir: Path, *,
                 only: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> int:
    """One ``schemathesis run`` with ``token``, on the operations ``only`` names (all but ``skip``)."""
    cmd = [
        str(Path(sys.executable).parent / "schemathesis"), "--no-color",
        "--config-file", str(Path(__file__).with_name("apicheck.toml")), "run", schema_url,
        "--checks", CHECKS,
        "--header", f"Authorization: Bearer {token}",
        "--generation-with-security-parameters", "false",
        "--max-examples", str(args.examples),
        "--seed", str(args.seed),
        "--workers", str(args.workers),
        "--request-timeout", "30",
        "--generation-database", "none",
        "--suppress-health-check", "all",
    ]
    for op_id in only:
        cmd += ["--include-operation-id", op_id]
    for op_id in skip:
        cmd += ["--exclude-operation-id", op_id]
    # In the scratch folder: schemathesis keeps a cache (.schemathesis/) where it runs.
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, cwd=workdir).returncode


async def main(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="chapicheck-"))
    pg = os.environ.get("CHANNELHUB_TEST_DATABASE_URL")
    pg_name = None
    proc: subprocess.Popen[bytes] | None = None
    log_file = (workdir / "serve.log").open("wb")
    failed: list[str] = []
    try:
        if pg:
            database_url, pg_name = await scratch_pg(pg)
        else:
            database_url = f"sqlite+aiosqlite:///{workdir / 'hub.db'}"
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHANNELHUB_")}
        env.update({"CHANNELHUB_DATABASE_URL": database_url, "CHANNELHUB_PORT": str(port),
                    "CHANNELHUB_HOST": "127.0.0.1", "CHANNELHUB_SMTP_PORT": str(free_port()),
                    "CHANNELHUB_LOG_LEVEL": "WARNING", "CHANNELHUB_SECRET_KEY": uuid.uuid4().hex * 2,
                    "CHANNELHUB_OPERATOR_HOST": OPERATOR_HOST,
                    # The runs sign in with wrong passwords a lot; the seeded seats must stay usable.
                    "CHANNELHUB_LOGIN_ADDRESS_FAILURES": "1000000",
                    "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
        if os.environ.get("CHANNELHUB_TEST_REDIS_URL"):
            env["CHANNELHUB_REDIS_URL"] = os.environ["CHANNELHUB_TEST_REDIS_URL"]
        cli(env, workdir, "migrate")
        cli(env, workdir, "tenant", "create", "--name", "API check", "--domain", DOMAIN)
        cli(env, workdir, "group", "create", "--domain", DOMAIN, "--name", "Support")
        for role, as_role in (("owner", "owner"), ("admin", "admin"), ("supervisor", "supervisor"),
                              ("agent", "agent"), ("ender", "admin")):
            cli(env, workdir, "agent", "create", "--domain", DOMAIN, "--email", f"{role}@apicheck.example",
                "--name", f"API check {role}", "--password", PASSWORD, "--role", as_role, "--group", "1")
        for role, as_role in (*((r, r) for r in OPERATOR_ROLES), ("ender", "owner")):
            cli(env, workdir, "operator", "create", "--email", f"{role}@operator.apicheck.example", "--name",
                f"Operator {role}", "--role", as_role, "--password-stdin", stdin=OPERATOR_PASSWORD + "\n")
        proc = start_serve(env, workdir, log_file)
        base = f"http://127.0.0.1:{port}"
        await wait_up(base, proc)
        tokens = await seed(base)
        schema_url = base + "/api/v1/openapi.json"
        for role in ROLES:
            log(f"--- {role}: every operation but those that end the token ---")
            if schemathesis(schema_url, tokens[role], args, workdir, skip=TOKEN_ENDERS) != 0:
                failed.append(role)
        log("--- the operations that end the token, with a seat of their own ---")
        if schemathesis(schema_url, tokens["ender"], args, workdir, only=TOKEN_ENDERS) != 0:
            failed.append("token enders")
        operator_base = f"http://{OPERATOR_HOST}:{port}"
        operator = await operator_tokens(operator_base)
        operator_url = operator_base + "/operator/v1/openapi.json"
        for role in OPERATOR_ROLES:
            log(f"--- operator {role}: every operation but those that end a token or an account ---")
            if schemathesis(operator_url, operator[role], args, workdir, skip=OPERATOR_ENDERS) != 0:
                failed.append(f"operator {role}")
        log("--- the operator operations that end a token or an account, with an account of their own ---")
        if schemathesis(operator_url, operator["ender"], args, workdir, only=OPERATOR_ENDERS) != 0:
            failed.append("operator token enders")
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        log_file.close()
        errors = [line for line in (workdir / "serve.log").read_text(errors="replace").splitlines()
                  if "Traceback" in line or "unhandled error" in line]
        if errors:
            log(f"the hub logged {len(errors)} unhandled errors: {workdir / 'serve.log'}")
            failed.append("hub log")
        if pg and pg_name:
            await drop_pg(pg, pg_name)
        if not args.keep and not errors:
            shutil.rmtree(workdir, ignore_errors=True)
    if failed:
        log(f"FAILED: {', '.join(failed)}")
        return 1
    log("passed: no server error, every status and answer as the document says")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=int(os.environ.get("APICHECK_EXAMPLES", "30")),
                        help="test cases per operation and phase (schemathesis --max-examples)")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("APICHECK_SEED", "12")))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (the hub's log)")
    sys.exit(asyncio.run(main(parser.parse_args())))
