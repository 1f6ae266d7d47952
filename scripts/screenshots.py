"""Run the demo deployment on a local server and photograph it in headless Chromium.

    python3 -m venv /tmp/pw && /tmp/pw/bin/pip install playwright   # not a project dependency
    apt-get install chromium                                         # Debian's package
    /tmp/pw/bin/python scripts/screenshots.py [--out docs/figures] [--outputs DIR] [--keep-server]

What it does, as docs/prefect.md tells a user to: ``scripts/server.sh start`` (a fresh
``PREFECT_HOME`` under a temporary folder and a free port, so a server of yours is left alone),
``deploy``, ``worker`` in the background, then ``augment-market submit default --wait`` with the
outputs sent to a temporary folder (``--set``), so an existing ``demo_output/`` is not touched.
The demo takes minutes (BENCHMARKS.md "Demo and Prefect"); ``--outputs DIR`` reuses the outputs
of an earlier, interrupted call (the generator resumes from its checkpoint). Then Chromium loads
the flow run's page and the report artifact, and the script writes ``prefect_run.png`` and
``prefect_report.png`` into ``--out``.

Settings: ``CHROMIUM`` (the browser; default ``/usr/bin/chromium``), ``AUGMENT_MARKET`` (the
command; default the project's ``.venv/bin/augment-market``, else ``uv run --locked
augment-market``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
SERVER_SH = str(PROJECT / "scripts" / "server.sh")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def augment_market_command() -> list[str]:
    if "AUGMENT_MARKET" in os.environ:
        return shlex.split(os.environ["AUGMENT_MARKET"])
    venv = PROJECT / ".venv" / "bin" / "augment-market"
    return [str(venv)] if venv.exists() else ["uv", "run", "--locked", "augment-market"]


def api(url: str, path: str, body: dict[str, object]) -> list[dict[str, object]]:
    request = urllib.request.Request(
        f"{url}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return list(json.load(response))


def run_demo(environment: dict[str, str], outputs: Path) -> str:
    """Submit the demo deployment with its outputs under ``outputs``; return the flow run id."""
    sets = {
        "dataset.source": outputs / "synthetic",
        "store_url": outputs / "store",
        "run_dir": outputs / "run",
    }
    command = [*augment_market_command(), "submit", "default", "--wait"]
    for key, value in sets.items():
        command += ["--set", f"{key}={value}"]
    print("$", shlex.join(command), flush=True)
    done = subprocess.run(command, env=environment, cwd=PROJECT, capture_output=True, text=True)
    print(done.stdout, done.stderr, sep="\n", flush=True)
    if done.returncode != 0:
        raise SystemExit(f"the demo run failed (exit status {done.returncode})")
    return next(
        line.split()[-1] for line in done.stdout.splitlines() if line.startswith("flow run id")
    )


def photograph(base: str, flow_run_id: str, out: Path) -> list[Path]:
    """The run page (graph, states) and the report artifact, as PNG files in ``out``."""
    from playwright.sync_api import sync_playwright

    artifacts = api(
        base,
        "/api/artifacts/filter",
        {
            "artifacts": {
                "key": {"any_": ["augment-market-report"]},
                "flow_run_id": {"any_": [flow_run_id]},
            }
        },
    )
    report_id = artifacts[0]["id"]
    shots = [
        (f"{base}/runs/flow-run/{flow_run_id}", out / "prefect_run.png", 1000),
        (f"{base}/artifacts/artifact/{report_id}", out / "prefect_report.png", 2200),
    ]
    executable = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for url, path, height in shots:
            page.goto(url, wait_until="networkidle")
            page.wait_for_timeout(5000)  # the run graph lays itself out after the data arrives
            page.screenshot(
                path=str(path),
                full_page=True,
                clip={"x": 0, "y": 0, "width": 1400, "height": height},
            )
            print("wrote", path, flush=True)
        browser.close()
    return [path for _, path, _ in shots]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=PROJECT / "docs" / "figures")
    parser.add_argument("--outputs", type=Path, default=None, help="the demo's outputs folder")
    parser.add_argument("--keep-server", action="store_true", help="leave the server running")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="augment-market-screenshots-"))
    port = free_port()
    environment = {
        **os.environ,
        "PORT": str(port),
        "PREFECT_HOME": str(work / "prefect-home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    subprocess.run([SERVER_SH, "start"], env=environment, check=True)
    worker = None
    try:
        subprocess.run([SERVER_SH, "deploy"], env=environment, check=True)
        with open(work / "worker.log", "w") as worker_log:
            worker = subprocess.Popen(
                [SERVER_SH, "worker"], env=environment, stdout=worker_log, stderr=worker_log
            )
            flow_run_id = run_demo(environment, args.outputs or work / "demo_output")
        photograph(f"http://127.0.0.1:{port}", flow_run_id, args.out)
        if args.keep_server:
            print(f"server left running: http://127.0.0.1:{port} (PREFECT_HOME={work})")
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:  # a loaded machine: do not leave it behind
                worker.kill()
        if not args.keep_server:
            subprocess.run([SERVER_SH, "stop"], env=environment, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
