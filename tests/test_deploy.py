"""The cluster path is the same code: the `compress` flow on an external Ray (`ray start --head`, a
separate process) and the `compress` deployment of `prefect.yaml` on a real `prefect server` with a
process worker, writing to a real SeaweedFS. This is the local stack of infra/compose.yaml, run as
plain processes on 127.0.0.1 (no container engine needed).

Every process started here gets its own ports, temp dirs and process group, and only those are
stopped afterwards (never `ray stop`, which would stop every Ray on the machine).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
import yaml

from tests.fixtures_store import new_bucket
from tests.test_infra import compress_deployment

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SAMPLES = sorted((ROOT / "samples").glob("*.mp4"))[:2]
TINY_MODEL = "random:tiny:0"  # workers.codec_actor: a tiny random codec (fast on CPU)


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgid) of every live process, from /proc (Linux)."""
    table = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z":  # zombies are gone already
                table[int(d.name)] = (int(fields[1]), int(fields[2]))
    return table


def _group_and_descendants(pgid: int) -> set[int]:
    table = _proc_table()
    pids = {pid for pid, (_, g) in table.items() if g == pgid}
    grew = True
    while grew:
        more = {pid for pid, (ppid, _) in table.items() if ppid in pids} - pids
        pids |= more
        grew = bool(more)
    return pids


def stop_group(proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
    """Stop what this test started: the process group of `proc` (it was started with
    start_new_session) and every descendant of its members (e.g. Ray workers in their own groups).
    SIGTERM first, SIGKILL after `timeout_s`. Nothing else on the machine is touched."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _group_and_descendants(proc.pid)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + (timeout_s if sig == signal.SIGTERM else 5)
        while pids and time.monotonic() < deadline:
            proc.poll()  # reap it if it was ours
            table = _proc_table()
            pids = {p for p in pids if p in table}
            time.sleep(0.2)
        if not pids:
            break
    if proc.poll() is None:
        proc.kill()
    proc.wait(5)


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RAY_", "AWS_"))}
    env.update(
        RAY_USAGE_STATS_ENABLED="0",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PYTHONPATH=str(ROOT),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    env.update(extra)
    return env


def s3_env(server) -> dict[str, str]:
    """The standard AWS settings a user of an S3-compatible server sets (flows and actors read them)."""
    return dict(
        AWS_ENDPOINT_URL_S3=server.endpoint,
        AWS_ACCESS_KEY_ID=server.access_key,
        AWS_SECRET_ACCESS_KEY=server.secret_key,
        AWS_DEFAULT_REGION="us-east-1",
    )


@pytest.fixture(scope="module")
def external_ray(s3_server):
    """`ray start --head` on 127.0.0.1 as a separate process, with its own temp dir, free ports and
    its own auth token (Ray >= 2.5x turns token auth on when ~/.ray/auth_token exists: we set it
    explicitly so the result does not depend on that file).

    Its workers (the codec actors) get the S3 settings from the environment of `ray start`, like the
    Ray containers of infra/compose.yaml. Yields (GCS address, temp dir, env a driver on this node
    needs, Ray client address)."""
    tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths are length-limited
    (gcs, client, dash, agent_http, agent_grpc, metrics, node_mgr, obj_mgr, rt_env) = free_ports(9)
    cmd = [
        str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}",
        "--num-cpus=2", "--include-dashboard=false", f"--temp-dir={tmp}", "--disable-usage-stats",
        f"--ray-client-server-port={client}", f"--dashboard-port={dash}",
        f"--dashboard-agent-listen-port={agent_http}", f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--metrics-export-port={metrics}", f"--node-manager-port={node_mgr}",
        f"--object-manager-port={obj_mgr}", f"--runtime-env-agent-port={rt_env}",
    ]
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    # On a loaded 2-core CI box the Ray client's per-session server can take longer than Ray's 30 s
    # default to answer (seen as "Starting Ray client server failed"): give it 120 s.
    env = base_env(**s3_env(s3_server), **auth, RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S="120")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"ray start failed:\n{out[-3000:]}"
        yield f"127.0.0.1:{gcs}", tmp, {"RAY_ADDRESS": f"127.0.0.1:{gcs}", **auth}, f"ray://127.0.0.1:{client}"
    finally:
        stop_group(proc)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """`prefect server start` on 127.0.0.1 with its own PREFECT_HOME; yields the API URL."""
    home = tmp_path_factory.mktemp("prefect-server-home")
    (port,) = free_ports(1)
    env = base_env(PREFECT_HOME=str(home))
    log = open(home / "server.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=home,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"prefect server exited: {(home / 'server.log').read_text()[-3000:]}"
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "prefect server not healthy after 120 s"
            time.sleep(0.5)
        yield api
    finally:
        stop_group(proc)
        log.close()


def client_env(api: str, tmp: Path, **extra: str) -> dict[str, str]:
    home = tmp / f"home-{uuid.uuid4().hex[:6]}"
    home.mkdir()
    return base_env(PREFECT_API_URL=api, PREFECT_HOME=str(home), **extra)


def run(cmd: list[str], env: dict[str, str], timeout: float = 180, cwd: Path = ROOT) -> str:
    res = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(cmd)} -> {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def upload_sources(server, bucket: str) -> list[str]:
    s3 = server.client()
    for clip in SAMPLES:
        s3.upload_file(str(clip), bucket, f"raw/{clip.name}")
    return [f"s3://{bucket}/raw/{clip.name}" for clip in SAMPLES]


def archived_video_ids(server, bucket: str, prefix: str) -> tuple[set[str], list[str]]:
    """(video ids with a header and layers, manifest parts) under s3://bucket/prefix."""
    s3 = server.client()
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])]
    rel = [k[len(prefix):].lstrip("/") for k in keys]
    headers = {k.split("/")[1] for k in rel if k.startswith("videos/") and k.endswith("/header.bin")}
    layered = {k.split("/")[1] for k in rel if k.startswith("videos/") and "/layer-" in k}
    manifests = [k for k in rel if k.startswith("manifests/") and k.endswith(".parquet")]
    return headers & layered, manifests


DRIVER = """
import json, sys
import ray
from flows.compress import compress
report = compress(sources=json.loads(sys.argv[1]), dest=sys.argv[2], weights=sys.argv[3], actors=2)
ctx = ray.get_runtime_context()
print("RESULT " + json.dumps({"report": report, "gcs": ctx.gcs_address,
                              "resources": ray.cluster_resources()}, default=str))
"""


@pytest.mark.timeout(600)
def test_compress_flow_on_external_ray(external_ray, prefect_server, s3_server, tmp_path):
    """The flow joins the cluster named by RAY_ADDRESS; its codec actors run in that cluster's raylet."""
    address, ray_tmp, ray_env, _ = external_ray
    bucket = new_bucket(s3_server)
    sources = upload_sources(s3_server, bucket)
    dest = f"s3://{bucket}/archive"
    env = client_env(prefect_server, tmp_path, **ray_env, **s3_env(s3_server))
    out = run([sys.executable, "-c", DRIVER, json.dumps([f"s3://{bucket}/raw/"]), dest, TINY_MODEL], env,
              timeout=420)
    result = json.loads(next(ln for ln in out.splitlines() if ln.startswith("RESULT "))[7:])
    report = result["report"]
    assert len(report["committed"]) == len(sources), report
    assert not report["failed"], report["failed"]
    # it joined the external cluster (same GCS port, its 2 CPUs) rather than starting its own Ray
    assert result["gcs"].rsplit(":", 1)[1] == address.rsplit(":", 1)[1]
    assert result["resources"]["CPU"] == 2.0
    # the codec actors ran as workers of that raylet: their logs are in its temp dir
    logs = list((ray_tmp / "session_latest" / "logs").glob("worker-*"))
    assert any("CodecActor" in p.read_text(errors="replace") for p in logs), "no CodecActor worker logs"
    ids, manifests = archived_video_ids(s3_server, bucket, "archive")
    assert ids == {v["video_id"] for v in report["committed"]} and manifests


def api_call(method: str, url: str, attempts: int = 6, **kw) -> httpx.Response:
    """One Prefect REST call, retried like Prefect's own client does: the server answers 503 for errors a
    client may retry (SQLite "database is locked" while a worker and the scheduler write; seen in CI)."""
    for i in range(attempts):
        try:
            resp = httpx.request(method, url, timeout=10, **kw)
        except httpx.TransportError:
            if i == attempts - 1:
                raise
        else:
            if resp.status_code != 503 or i == attempts - 1:
                return resp
        time.sleep(0.5 * 2**i)
    raise AssertionError("unreachable")


def _flow_run_state(api: str, run_id: str) -> dict:
    return api_call("GET", f"{api}/flow_runs/{run_id}").json()["state"]


@pytest.mark.timeout(600)
def test_prefect_deployment_runs_on_worker(prefect_server, external_ray, s3_server, tmp_path):
    """`prefect deploy` of prefect.yaml's `compress` deployment on a real server, a run triggered and
    picked up by a process worker of the deployment's work pool, completing against SeaweedFS."""
    _, ray_tmp, ray_env, client_address = external_ray
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    dep = compress_deployment(spec)
    pool = dep["work_pool"]["name"]
    env = client_env(prefect_server, tmp_path)
    prefect = str(BIN / "prefect")
    ensure_work_pool(pool, prefect_server, env)
    # exits 0 since fastapi is pinned below 0.151 (before, the server answered the CLI's `limit: null` with 422)
    run([prefect, "--no-prompt", "deploy", "--prefect-file", str(ROOT / "prefect.yaml"), "--name", dep["name"]], env)
    deployments = api_call("POST", f"{prefect_server}/deployments/filter", json={}).json()
    d = next(x for x in deployments if x["name"] == dep["name"])
    assert d["entrypoint"] == dep["entrypoint"] and d["work_pool_name"] == pool
    assert any(s["schedule"].get("cron") for s in d["schedules"]), "deployed without its cron schedule"
    limit = dep.get("concurrency_limit")
    limit = limit.get("limit") if isinstance(limit, dict) else limit
    assert (d.get("global_concurrency_limit") or {}).get("limit") == limit, d.get("global_concurrency_limit")

    bucket = new_bucket(s3_server)
    sources = upload_sources(s3_server, bucket)
    params = {"sources": [f"s3://{bucket}/raw/"], "dest": f"s3://{bucket}/archive", "weights": TINY_MODEL}
    created = api_call("POST", f"{prefect_server}/deployments/{d['id']}/create_flow_run",
                       json={"parameters": params})
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]

    # the worker carries the environment a deployment runs with: Ray cluster and S3 settings. Like the
    # Prefect worker of infra/compose.yaml and infra/k8s, it reaches Ray through the Ray client (ray://).
    # Ray's client proxy always starts its per-session server on 127.0.0.1:23000 first (a constant in
    # ray.util.client.server.proxier); when another Ray on this shared machine holds that port, use the
    # GCS address instead (the deployment path is the same; only the transport to Ray differs).
    via_client = port_is_free(23000)
    ray_address = client_address if via_client else ray_env["RAY_ADDRESS"]
    wenv = client_env(prefect_server, tmp_path, **dict(ray_env, RAY_ADDRESS=ray_address), **s3_env(s3_server))
    n_logs = len(list((ray_tmp / "session_latest" / "logs").glob("ray_client_server*")))
    wlog = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen([prefect, "worker", "start", "--pool", pool, "--type", "process"],
                              env=wenv, cwd=tmp_path, stdout=wlog, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 480
        state = _flow_run_state(prefect_server, run_id)
        while state["type"] not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"flow run still {state['type']}"
            time.sleep(1)
            state = _flow_run_state(prefect_server, run_id)
    finally:
        stop_group(worker)
        wlog.close()
    client_errs = "".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:]
                          for p in sorted((ray_tmp / "session_latest" / "logs").glob("ray_client_server*")))
    assert state["type"] == "COMPLETED", (
        f"{state}\n{(tmp_path / 'worker.log').read_text()[-4000:]}\nRay client server logs:\n{client_errs}")
    ids, manifests = archived_video_ids(s3_server, bucket, "archive")
    assert len(ids) == len(sources) and manifests, (ids, manifests)
    # the run went through the cluster's Ray client server (one server process per client session)
    client_logs = sorted(p.name for p in (ray_tmp / "session_latest" / "logs").glob("ray_client_server*"))
    assert len(client_logs) > n_logs or not via_client, client_logs


def ensure_work_pool(name: str, api: str, env: dict[str, str]) -> None:
    """Create the process work pool `name` unless the (module-shared) server has it already."""
    if api_call("GET", f"{api}/work_pools/{name}").status_code != 200:
        run([str(BIN / "prefect"), "work-pool", "create", name, "--type", "process"], env)


@pytest.mark.timeout(300)
def test_readme_deploy_all_then_list(prefect_server, tmp_path):
    """The README's `prefect.yaml` path as a user types it: `prefect --no-prompt deploy --all`, then
    `prefect deployment ls` and `prefect flow-run ls`, all exiting 0 against a real server (issue 16.3:
    with fastapi >= 0.151 the server answered the CLI's `limit: null` with HTTP 422)."""
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    dep = compress_deployment(spec)
    env = client_env(prefect_server, tmp_path)
    prefect = str(BIN / "prefect")
    ensure_work_pool(dep["work_pool"]["name"], prefect_server, env)
    out = run([prefect, "--no-prompt", "deploy", "--all"], env)
    assert "HTTP 422" not in out and "Unprocessable" not in out, out[-3000:]
    listed = run([prefect, "deployment", "ls"], env, cwd=tmp_path)
    assert dep["name"] in listed and "compress" in listed, listed[-3000:]
    run([prefect, "flow-run", "ls"], env, cwd=tmp_path)
    run([prefect, "work-pool", "ls"], env, cwd=tmp_path)


def _flow_runs_of(api: str, deployment_id: str) -> list[dict]:
    # earliest first: the scheduler creates up to 100 runs ahead, and by the default order (id) the one that
    # already ran may fall outside the first 50
    body = {"deployments": {"id": {"any_": [deployment_id]}}, "limit": 50, "sort": "EXPECTED_START_TIME_ASC"}
    resp = api_call("POST", f"{api}/flow_runs/filter", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _serve_cron(api: str, tmp_path: Path, completed: bool, extra: tuple[str, ...] = ()) -> dict:
    """Run `progvc schedule --cron "* * * * *"` on an empty source folder against the server `api` until the
    server's scheduler has created a run from the cron schedule (`completed`: until such a run has also been
    executed by the serving process and completed). `extra`: more `schedule` arguments. Returns that flow run."""
    src, dest = tmp_path / "src", tmp_path / "archive"
    src.mkdir()
    name = f"cron-{uuid.uuid4().hex[:6]}"
    env = client_env(api, tmp_path, PREFECT_RUNNER_POLL_FREQUENCY="2")  # default 10 s
    log = open(tmp_path / "schedule.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "progvc"), "schedule", str(src), "--dest", str(dest), "--cron", "* * * * *", "--name", name,
         "--weights", TINY_MODEL, *extra],
        env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    t0 = time.monotonic()
    # the deployment (≈ 10 s) and its first scheduled runs (≈ 5 s); to complete: the next minute (≤ 60 s)
    # and the run (≈ 15 s)
    deadline = t0 + (150 if completed else 60)
    try:
        dep_id, found = None, None
        while found is None:
            assert proc.poll() is None, (tmp_path / "schedule.log").read_text()[-3000:]
            if time.monotonic() > deadline:
                runs = _flow_runs_of(api, dep_id) if dep_id else []
                seen = [(r["name"], r["state_type"], r["auto_scheduled"]) for r in runs]
                raise AssertionError(f"no {'completed ' if completed else ''}cron run after "
                                     f"{time.monotonic() - t0:.0f} s (deployment {dep_id}, runs {seen})\n"
                                     f"{(tmp_path / 'schedule.log').read_text()[-3000:]}")
            if dep_id is None:
                resp = api_call("GET", f"{api}/deployments/name/compress/{name}")
                dep_id = resp.json()["id"] if resp.status_code == 200 else None
            else:
                runs = [r for r in _flow_runs_of(api, dep_id) if r["auto_scheduled"]]
                bad = [r for r in runs if r["state_type"] in ("FAILED", "CRASHED")]
                assert not bad, f"{bad[0]['state']}\n{(tmp_path / 'schedule.log').read_text()[-3000:]}"
                found = next((r for r in runs if r["state_type"] == "COMPLETED" or not completed), None)
            time.sleep(1)
    finally:
        stop_group(proc)
        log.close()
    assert found["auto_scheduled"] and found["parameters"]["dest"] == str(dest)
    print(f"cron run {found['state_type']} {time.monotonic() - t0:.0f} s after `progvc schedule` started")
    return found


@pytest.mark.timeout(180)
def test_schedule_cron_creates_runs(prefect_server, tmp_path):
    """`progvc schedule --cron "* * * * *"` against a real Prefect server: the server's scheduler creates
    runs from the cron schedule, due at the next minutes (issue 16.2: with SQLAlchemy 2.1 it logged
    `InvalidRequestError: Can't evaluate bulk DML statement` every loop and created none). `--timezone`
    (issue 16.9d) is the schedule's time zone on the server."""
    found = _serve_cron(prefect_server, tmp_path, completed=False, extra=("--timezone", "Asia/Kolkata"))
    due = datetime.fromisoformat(found["expected_start_time"].replace("Z", "+00:00"))
    assert due.second == 0 and due.microsecond == 0, due
    assert (due - datetime.now(timezone.utc)).total_seconds() > -120, due  # a run of the next minutes
    dep = api_call("GET", f"{prefect_server}/deployments/{found['deployment_id']}").json()
    assert [s["schedule"]["timezone"] for s in dep["schedules"]] == ["Asia/Kolkata"], dep["schedules"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_schedule_cron_run_completes(prefect_server, tmp_path):
    """... and the serving process runs the first one when it is due, to completion (≈ 40–90 s, most of it
    waiting for the next minute: hence `slow`). The source folder is empty, so no Ray starts."""
    found = _serve_cron(prefect_server, tmp_path, completed=True)
    assert found["state_type"] == "COMPLETED"
    # issue 16.9e: the scheduled run's report is in the UI: a Markdown artifact and a one-line summary log
    arts = api_call("POST", f"{prefect_server}/artifacts/filter",
                    json={"artifacts": {"flow_run_id": {"any_": [found["id"]]}}}).json()
    assert [(a["type"], a["key"].startswith("compress-job-")) for a in arts] == [("markdown", True)], arts
    assert "0 committed, 0 skipped, 0 failed" in arts[0]["data"]
    logs = api_call("POST", f"{prefect_server}/logs/filter",
                    json={"logs": {"flow_run_id": {"any_": [found["id"]]}}, "limit": 200}).json()
    assert any(lg["message"].startswith("job job-") and "0 committed" in lg["message"] for lg in logs), logs
