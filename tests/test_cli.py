"""The operator's CLI: it works against the configured database and refuses bad input with a
message and a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

from tests.conftest import PASSWORD, ROOT, Server


def run(settings: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHANNELHUB_DATABASE_URL": settings.database_url, "CHANNELHUB_LOG_LEVEL": "WARNING"}
    env.pop("CHANNELHUB_REDIS_URL", None)
    return subprocess.run([sys.executable, "-m", "channelhub.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


async def test_tenant_and_agent_created_by_cli_can_sign_in(settings: Any, server: Server) -> None:
    from admin_api.client import AgentClient

    domain = f"cli{uuid.uuid4().hex[:8]}.example.com"
    made = run(settings, "tenant", "create", "--name", "CLI Co", "--domain", domain.upper())
    assert made.returncode == 0, made.stderr
    group = run(settings, "group", "create", "--domain", domain, "--name", "support")
    assert group.returncode == 0, group.stderr
    group_id = group.stdout.split()[1]
    agent = run(settings, "agent", "create", "--domain", domain, "--email", f"ops@{domain}", "--name", "Ops",
                "--password", PASSWORD, "--role", "admin", "--group", group_id)
    assert agent.returncode == 0, agent.stderr

    async with AgentClient(server.url, host=domain) as client:
        await client.login(f"ops@{domain}", PASSWORD)
        agents = (await client.api("GET", "/api/v1/agents"))["agents"]
        assert [(a["email"], a["role"], a["group_ids"]) for a in agents] == [(f"ops@{domain}", "admin",
                                                                               [int(group_id)])]


def test_bad_input_is_refused_with_a_message(settings: Any) -> None:
    domain = f"cli{uuid.uuid4().hex[:8]}.example.com"
    assert run(settings, "tenant", "create", "--name", "X", "--domain", domain).returncode == 0
    cases = [
        (("tenant", "create", "--name", "Y", "--domain", domain), "taken"),
        (("tenant", "create", "--name", "Y", "--domain", "not a domain!"), "not a valid domain"),
        (("agent", "create", "--domain", "nowhere.example.com", "--email", "a@b.c", "--name", "A",
          "--password", PASSWORD), "no tenant"),
        (("agent", "create", "--domain", domain, "--email", "a@b.c", "--name", "A", "--password", "short"),
         "at least 8"),
        (("agent", "create", "--domain", domain, "--email", "a@b.c", "--name", "A", "--password", PASSWORD,
          "--group", "999999"), "groups not found"),
        (("agent", "create", "--domain", domain, "--email", "a@b.c", "--name", "A", "--password", PASSWORD,
          "--role", "king"), "invalid choice"),
        # What the API refuses, the command refuses, with the API's words.
        (("agent", "create", "--domain", domain, "--email", "a@b.c", "--name", "A", "--password", PASSWORD,
          "--capacity", "-1"), "capacity: Input should be greater than or equal to 0"),
        (("agent", "create", "--domain", domain, "--email", "a@b.c", "--name", "", "--password", PASSWORD),
         "name: String should have at least 1 character"),
        (("agent", "create", "--domain", domain, "--email", "not-an-address", "--name", "A", "--password",
          PASSWORD), "email:"),
        (("tenant", "create", "--name", "Y", "--domain", f"dot{domain}."), "without a trailing dot"),
        (("tenant", "create", "--name", "", "--domain", f"empty{domain}"), "needs a name"),
        (("migrate", "no-such-revision"), "cannot migrate to 'no-such-revision'"),
    ]
    for args, expected in cases:
        result = run(settings, *args)
        assert result.returncode != 0, args
        assert expected in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)


def test_worker_without_redis_says_why(settings: Any) -> None:
    result = run(settings, "worker")
    assert result.returncode == 2
    assert "CHANNELHUB_REDIS_URL" in result.stderr
