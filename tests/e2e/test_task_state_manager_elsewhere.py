"""Another team's front end, on its own origin, imports the TaskStateManager from the stable
path a taskstate server serves it at, in a real chromium.

The team's page is served by a plain HTTP server of its own (`http://localhost:P`), taskstate by
uvicorn at `http://127.0.0.1:Q` with that origin in TASKSTATE_CORS_ORIGINS, as README says.
The page's module script imports `http://127.0.0.1:Q/task-state-manager.js` (a cross-origin
module load: CORS, and a JavaScript type under `nosniff`), starts several tasks at once and
hears each finish over the event stream.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.browser import launched_chromium, missing_browser
from tests.support.servers import live_server, make_settings

pytestmark = pytest.mark.e2e

AT_ONCE = 5

#: The team's own page: nothing of taskstate's but the import from the server.
PAGE = """<!doctype html><title>our own dashboard</title><link rel="icon" href="data:,">
<ul id="done"></ul>
<script type="module">
  import { TaskStateManager } from '%(api)s/task-state-manager.js';
  const manager = new TaskStateManager({ baseUrl: '%(api)s' });
  window.heard = { completed: [], progress: [], restored: 0, idle: 0 };
  manager.on('noActiveTask', () => { window.heard.idle += 1; });
  manager.on('taskProgress', (task) => window.heard.progress.push(task.id));
  manager.on('taskCompleted', (task) => {
    window.heard.completed.push(task.id);
    const item = document.createElement('li');
    item.textContent = `${task.name}: ${task.state}`;
    document.getElementById('done').append(item);
  });
  await manager.initialize();
  window.manager = manager;
</script>
"""

START_SEVERAL = """async (count) => {
  const tasks = await Promise.all(Array.from({ length: count }, (_, i) =>
    window.manager.startTask({ type: 'demo.sleep', params: { seconds: 1, steps: 4 }, name: `ours ${i}` })));
  return tasks.map((task) => task.id);
}"""


@pytest.fixture
def team_site(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """The team's own web server (its page written into the folder later), on a loopback port."""
    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


async def test_a_page_of_another_origin_imports_the_manager_from_the_server(
    tmp_path: Path, team_site: tuple[Path, str]
) -> None:
    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    folder, origin = team_site
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'elsewhere.db'}", cors_origins=origin)
    async with live_server(settings) as live, launched_chromium() as browser:
        (folder / "index.html").write_text(PAGE % {"api": live.base_url})
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        await page.goto(f"{origin}/index.html")
        await page.wait_for_function("window.manager?.connectionState === 'live'", timeout=15_000)
        assert await page.evaluate("window.heard.idle") == 1

        ids = await page.evaluate(START_SEVERAL, AT_ONCE)
        assert len(set(ids)) == AT_ONCE
        await page.wait_for_function(
            f"window.heard.completed.length >= {AT_ONCE}", timeout=30_000, polling=100
        )
        heard = await page.evaluate("window.heard")
        assert sorted(heard["completed"]) == sorted(ids)
        assert set(heard["progress"]) == set(ids), "no live progress for some task"
        assert await page.locator("#done li").count() == AT_ONCE
        for task_id in ids:
            assert (await live.get(task_id))["state"] == "completed"
        assert errors == []
