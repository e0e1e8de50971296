"""The README's Python client example runs as written: the block is taken from the README and run
against a test server, with only the demo's address, domain and credentials swapped for the test's."""

from __future__ import annotations

import asyncio
import re
import sys

from tests.conftest import PASSWORD, ROOT, TenantInfo


def readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    [block] = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "AgentClient" in b]
    return "\n".join(line[2:] if line.startswith("  ") else line for line in block.splitlines())


async def test_the_readme_client_example_runs_as_written(tenant: TenantInfo) -> None:
    agent = await tenant.add_agent(name="Bob")
    code = readme_example()
    swaps = (("http://127.0.0.1:8080", tenant.server.url), ('host="demo.localhost"', f'host="{tenant.domain}"'),
             ("bob@demo.localhost", agent.email), ("demo-password", PASSWORD))
    for demo, ours in swaps:
        assert demo in code, demo
        code = code.replace(demo, ours)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    # It signs in, connects and waits for a customer: one writes, and the example answers.
    async def customer() -> str:
        visitor = tenant.visitor()
        await visitor.connect(name="Reader")
        await visitor.send("Hello from the README test")
        answer = await visitor.wait_message(lambda m: m["direction"] == "outbound", timeout=30)
        return str(answer["text"])

    async def signed_in() -> None:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.decode().strip() == "signed in as Bob", line

    await signed_in()
    assert await customer() == "Hello! How can I help?"
    _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, stderr.decode()
