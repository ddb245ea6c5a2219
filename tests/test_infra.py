"""Static checks of what runs the pipeline beyond one machine (`infra/`, `prefect.yaml`).

No container engine exists on the development machine, so the images are checked by parsing their
Dockerfiles; every YAML/JSON manifest is parsed and cross-checked against the project (its name,
version, settings, flows and the real `weed` binary's flags).
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
DOCKERFILES = {"cpu": INFRA / "docker" / "cpu.Dockerfile", "cuda": INFRA / "docker" / "cuda.Dockerfile"}
BUILD_TOOLS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|cmake|make|cargo|rustc|gfortran|[a-z0-9-]+-dev)\b")
GPU_INSTANCE = re.compile(r"^(g4dn|g5|g5g|g6|g6e|gr6|p3|p3dn|p4d|p4de|p5|p5e)\.")
PROJECT = {  # [project] name and version (tomllib is Python >= 3.11 only)
    k: re.search(rf'^{k} = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)[1] for k in ("name", "version")
}
IMAGE_RE = re.compile(r"^(?:[\w.:-]+/)*(?P<name>[\w.-]+):(?P<version>[\w.]+)-(?P<variant>cpu|cuda)$")


# ---------------------------------------------------------------- helpers
def yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def all_yaml_files() -> list[Path]:
    return sorted(p for p in INFRA.rglob("*") if p.suffix in (".yaml", ".yml"))


def project_image(ref: str) -> re.Match:
    """Parse an image reference and assert it is this project's image at this project's version."""
    m = IMAGE_RE.match(ref)
    assert m, f"image {ref!r} is not <registry/>{PROJECT['name']}:<version>-cpu|cuda"
    assert m["name"] == PROJECT["name"], f"image {ref!r} is not the project's ({PROJECT['name']})"
    assert m["version"] == PROJECT["version"], f"image {ref!r}: tag is not version {PROJECT['version']}"
    return m


def constraint_pin(package: str) -> str:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        m = re.match(rf"^{package}==(\S+)", line.strip())
        if m:
            return m[1]
    raise AssertionError(f"constraints.txt pins no {package}")


def parse_dockerfile(path: Path) -> list[dict]:
    """Stages of a Dockerfile: [{'name', 'base', 'instructions': [(KEYWORD, args)]}]."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: list[dict] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.I)
            stages.append({"base": m[1], "name": m[2], "instructions": []})
        elif stages:
            stages[-1]["instructions"].append((keyword, " ".join(args.split())))
    return stages


def dockerignored() -> set[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return {ln.strip().rstrip("/") for ln in lines if ln.strip() and not ln.startswith("#")}


def settings_env_names() -> set[str]:
    src = (ROOT / "pipeline" / "settings.py").read_text()
    return set(re.findall(r"PROGVC_[A-Z0-9_]+", src))


@pytest.fixture(scope="module")
def prefect_yaml() -> dict:
    path = ROOT / "prefect.yaml"
    assert path.is_file(), "prefect.yaml is missing at the repository root"
    return yaml.safe_load(path.read_text())


def compress_deployment(prefect_yaml: dict) -> dict:
    """The deployment of the `compress` flow (entrypoint `flows/compress.py:compress`)."""
    found = [d for d in prefect_yaml.get("deployments") or []
             if re.search(r"(^|/)compress(\.py:|:|\.)compress$", d.get("entrypoint", ""))]
    assert len(found) == 1, f"prefect.yaml needs exactly one deployment of the compress flow, has {len(found)}"
    return found[0]


def load_entrypoint(entrypoint: str):
    """Import `path/to/file.py:func` (relative to the repo) or `pkg.module:func` and return the object."""
    path, _, func = entrypoint.rpartition(":")
    module = path[:-3].replace("/", ".") if path.endswith(".py") else path
    return getattr(importlib.import_module(module), func)


# ---------------------------------------------------------------- every manifest parses
def test_every_manifest_parses():
    files = all_yaml_files() + [ROOT / "prefect.yaml"]
    assert len(files) >= 5, files
    for path in files:
        docs = yaml_docs(path)
        assert docs and all(isinstance(d, dict) for d in docs), f"{path}: not YAML mappings"
    for path in INFRA.rglob("*.json"):
        json.loads(path.read_text())


# ---------------------------------------------------------------- images
@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_dockerfile_multistage_nonroot_weights_no_build_tools(variant):
    stages = parse_dockerfile(DOCKERFILES[variant])
    assert len(stages) >= 2, "the image must be multi-stage"
    build, final = stages[0], stages[-1]
    final_ins = final["instructions"]
    kw = [k for k, _ in final_ins]
    # non-root: the last USER is a named user or uid other than root/0
    users = [a for k, a in final_ins if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"final USER is {users}"
    assert kw.index("USER") > max(i for i, k in enumerate(kw) if k == "RUN"), "USER must follow the last RUN"
    # shipped weights inside, and the deployment file + flow sources Prefect loads entrypoints from
    copies = [a for k, a in final_ins if k == "COPY"]
    assert any(re.search(r"(^|\s)models/\s+\S*models/?$", c) for c in copies), f"no COPY models/: {copies}"
    for src in ("prefect.yaml", "flows/", "pipeline/", "workers/"):
        assert any(f" {src}" in f" {c}" for c in copies), f"final stage does not COPY {src}"
    # no compilers in the final stage, and nothing built or pip-installed there
    for k, a in final_ins:
        if k == "RUN":
            installs = " ".join(re.findall(r"apt-get install ([^&;]*)", a))
            assert not BUILD_TOOLS.search(installs), f"build tools in the final stage: {installs}"
            assert "pip install" not in a, f"pip install in the final stage: {a}"
    # the build stage has the compilers and installs the project (non-editable) into the venv
    # that the final stage copies
    b_runs = " ".join(a for k, a in build["instructions"] if k == "RUN")
    assert "build-essential" in b_runs
    assert re.search(r"pip install (-c constraints\.txt )?\.(\s|$|&)", b_runs), "project not installed"
    assert any(k == "COPY" and f"--from={build['name']}" in a for k, a in final_ins), "venv not copied"
    # torch pinned to the same version as constraints.txt, from the matching wheel index
    pin = constraint_pin("torch")
    assert re.search(rf"torch=={re.escape(pin)}(\s|$)", b_runs), f"torch not pinned to {pin}"
    index = dict(
        re.match(r"(\w+)=(\S+)", a).groups() for k, a in build["instructions"] if k == "ARG" and "=" in a
    )["TORCH_INDEX"]
    if variant == "cpu":
        assert index.endswith("/whl/cpu"), index
    else:
        assert re.search(r"/whl/cu\d{3}$", index), index
    assert "${TORCH_INDEX}" in b_runs
    # Ray pinned to the tested version (nodes, workers and clients must match)
    import ray

    assert re.search(r'"ray\[default\]==\$\{RAY_VERSION\}"', b_runs), "ray not pinned in the image"
    ray_arg = [a for k, a in build["instructions"] if k == "ARG" and a.startswith("RAY_VERSION=")]
    assert ray_arg == [f"RAY_VERSION={ray.__version__}"], ray_arg


@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_dockerfile_sources_exist_and_settings_env_is_read(variant):
    """Every COPY source exists and is in the build context; every PROGVC_* variable the image sets
    is one that pipeline.settings reads; no PROGVC_WEIGHTS pins an encoding model (new archives use the
    registry's default, latent-v1, which needs no file; models/ is copied for decoding older archives)."""
    stages = parse_dockerfile(DOCKERFILES[variant])
    ignored = dockerignored()
    for stage in stages:
        for k, a in stage["instructions"]:
            if k != "COPY" or "--from=" in a:
                continue
            parts = [p for p in a.split() if not p.startswith("--")]
            for src in parts[:-1]:
                assert (ROOT / src).exists() or src == "models/", f"COPY source {src} missing"
                assert src.rstrip("/").split("/")[0] not in ignored, f"{src} excluded by .dockerignore"
    env = " ".join(a for k, a in stages[-1]["instructions"] if k == "ENV")
    used = set(re.findall(r"PROGVC_[A-Z0-9_]+", env))
    assert used and used <= settings_env_names(), f"unknown settings: {used - settings_env_names()}"
    workdir = [a for k, a in stages[-1]["instructions"] if k == "WORKDIR"][-1]
    assert "PROGVC_WEIGHTS" not in env, "the image must encode with the registry's default model"
    assert workdir and (ROOT / "models").is_dir()


# ---------------------------------------------------------------- KubeRay
def kube_docs() -> dict[str, dict]:
    return {d["kind"]: d for p in (INFRA / "k8s").glob("*.yaml") for d in yaml_docs(p)}


def test_kuberay_cluster_gpu_workers_autoscaling():
    import ray

    docs = kube_docs()
    rc = docs["RayCluster"]
    assert rc["apiVersion"] == "ray.io/v1"
    spec = rc["spec"]
    assert spec["rayVersion"] == ray.__version__, "rayVersion must match the Ray the project is tested with"
    assert spec["enableInTreeAutoscaling"] is True
    head = spec["headGroupSpec"]
    head_c = head["template"]["spec"]["containers"][0]
    assert project_image(head_c["image"])["variant"] == "cpu"
    assert head["rayStartParams"].get("num-cpus") == "0", "codec actors must not land on the head"
    assert 10001 in [p["containerPort"] for p in head_c["ports"]], "Ray client port not exposed"
    gpu_groups = []
    for group in spec["workerGroupSpecs"]:
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
        c = group["template"]["spec"]["containers"][0]
        gpus = int(c["resources"]["limits"].get("nvidia.com/gpu", 0))
        if gpus:
            gpu_groups.append(group)
            assert project_image(c["image"])["variant"] == "cuda"
            assert int(c["resources"]["requests"]["nvidia.com/gpu"]) == gpus
            assert group["maxReplicas"] > group["minReplicas"], "GPU group cannot scale"
    assert gpu_groups, "no worker group requests nvidia.com/gpu"
    # pods run as the image's non-root user
    uid = re.search(r"useradd .*--uid (\d+)", DOCKERFILES["cpu"].read_text())[1]
    for tmpl in [head["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]:
        sc = tmpl["spec"]["securityContext"]
        assert sc["runAsNonRoot"] is True and str(sc["runAsUser"]) == uid
    # every PROGVC_* setting in the ConfigMap is a real setting
    cm = docs["ConfigMap"]["data"]
    assert {k for k in cm if k.startswith("PROGVC_")} <= settings_env_names()


def test_kube_prefect_worker_reaches_ray_and_pool(prefect_yaml):
    docs = kube_docs()
    rc_name = docs["RayCluster"]["metadata"]["name"]
    dep = docs["Deployment"]["spec"]["template"]["spec"]
    c = dep["containers"][0]
    project_image(c["image"])
    env = {e["name"]: e["value"] for e in c.get("env", [])}
    ray_addr = urlparse(env["RAY_ADDRESS"])
    assert ray_addr.scheme == "ray" and ray_addr.hostname == f"{rc_name}-head-svc" and ray_addr.port == 10001
    cmd = c["command"]
    assert cmd[:3] == ["prefect", "worker", "start"]
    assert cmd[cmd.index("--pool") + 1] == compress_deployment(prefect_yaml)["work_pool"]["name"]


# ---------------------------------------------------------------- AWS cluster launcher
def test_aws_cluster_launcher_gpu_image_iam():
    cfg = yaml.safe_load((INFRA / "aws" / "ray-cluster.yaml").read_text())
    assert cfg["provider"]["type"] == "aws"
    nodes = cfg["available_node_types"]
    assert cfg["head_node_type"] in nodes
    docker = cfg["docker"]
    assert project_image(docker["head_image"])["variant"] == "cpu"
    assert project_image(docker["worker_image"])["variant"] == "cuda"
    assert "--gpus all" in docker["worker_run_options"]
    gpu_workers = [
        n for name, n in nodes.items()
        if name != cfg["head_node_type"] and GPU_INSTANCE.match(n["node_config"]["InstanceType"])
    ]
    assert gpu_workers, "no GPU instance type among the worker node types"
    for name, n in nodes.items():
        arn = n["node_config"]["IamInstanceProfile"]["Arn"]
        assert re.match(r"arn:aws:iam::\d{12}:instance-profile/\S+", arn), f"{name}: {arn}"
        if name != cfg["head_node_type"]:
            assert 0 <= n["min_workers"] <= n["max_workers"] <= cfg["max_workers"]
    assert nodes[cfg["head_node_type"]]["resources"].get("CPU") == 0
    assert any("--ray-client-server-port=10001" in c for c in cfg["head_start_ray_commands"])
    policy = json.loads((INFRA / "aws" / "iam-s3-policy.json").read_text())
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:DeleteObject"} <= actions


# ---------------------------------------------------------------- compose
def compose() -> dict:
    return yaml.safe_load((INFRA / "compose.yaml").read_text())


def _flag(cmd: list[str], name: str) -> str | None:
    for i, a in enumerate(cmd):
        if a.startswith(f"{name}="):
            return a.split("=", 1)[1]
        if a == name and i + 1 < len(cmd):
            return cmd[i + 1]
    return None


def test_compose_images_ports_loopback_and_wiring(prefect_yaml):
    services = compose()["services"]
    assert {"seaweedfs", "prefect-server", "prefect-worker", "ray-head", "ray-worker"} <= set(services)
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        if name != "seaweedfs":
            project_image(svc["image"])
            dockerfile = ROOT / "infra" / svc["build"]["dockerfile"].removeprefix("infra/")
            assert dockerfile in DOCKERFILES.values(), f"{name} builds from {dockerfile}"
            assert (INFRA / svc["build"]["context"]).resolve() == ROOT
            variant = project_image(svc["image"])["variant"]
            assert dockerfile == DOCKERFILES[variant], f"{name}: image tag and Dockerfile disagree"

    sw = services["seaweedfs"]
    assert re.match(r"^chrislusf/seaweedfs:[\w.]+$", sw["image"]), "pin a SeaweedFS image tag"
    cmd = sw["command"]
    assert cmd[0] in ("mini", "server") and (cmd[0] == "mini" or "-s3" in cmd)
    s3_port = int(_flag(cmd, "-s3.port") or 8333)
    assert f"127.0.0.1:{s3_port}:{s3_port}" in sw["ports"]

    env = services["prefect-worker"]["environment"]
    s3 = urlparse(env["AWS_ENDPOINT_URL_S3"])
    assert (s3.hostname, s3.port) == ("seaweedfs", s3_port)
    api = urlparse(env["PREFECT_API_URL"])
    server_cmd = services["prefect-server"]["command"]
    assert server_cmd[:3] == ["prefect", "server", "start"]
    assert (api.hostname, api.port, api.path) == ("prefect-server", int(_flag(server_cmd, "--port")), "/api")
    ray_addr = urlparse(env["RAY_ADDRESS"])
    head_cmd = services["ray-head"]["command"]
    assert "--head" in head_cmd
    assert (ray_addr.scheme, ray_addr.hostname) == ("ray", "ray-head")
    assert ray_addr.port == int(_flag(head_cmd, "--ray-client-server-port"))
    gcs = _flag(services["ray-worker"]["command"], "--address")
    assert gcs == f"ray-head:{_flag(head_cmd, '--port')}"
    assert {k for k in env if k.startswith("PROGVC_")} <= settings_env_names()
    for name in ("ray-head", "ray-worker", "ray-worker-gpu"):  # Ray nodes are not clients of themselves
        assert "RAY_ADDRESS" not in services[name].get("environment", {}), name
        assert services[name]["environment"]["AWS_ENDPOINT_URL_S3"] == env["AWS_ENDPOINT_URL_S3"], name
    # the worker polls the pool the deployment targets; the GPU worker asks for NVIDIA devices
    wcmd = services["prefect-worker"]["command"]
    assert _flag(wcmd, "--pool") == compress_deployment(prefect_yaml)["work_pool"]["name"]
    gpu = services["ray-worker-gpu"]
    assert project_image(gpu["image"])["variant"] == "cuda"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] and d["driver"] == "nvidia" for d in devices)
    setup = " ".join(services["setup"]["command"])
    assert f"work-pool create {_flag(wcmd, '--pool')}" in setup and "deploy" in setup


def test_compose_seaweedfs_flags_exist_in_real_weed():
    """The flags given to `weed` in compose exist in the real binary (same version as the image tag)."""
    from pipeline.local_s3 import weed_binary

    sw = compose()["services"]["seaweedfs"]
    cmd = sw["command"]
    weed = weed_binary()
    out = subprocess.run([weed, cmd[0], "-h"], capture_output=True, text=True, timeout=60)
    known = set(re.findall(r"^\s+-([\w.]+)", out.stdout + out.stderr, re.M))
    assert known, "weed printed no flags"
    for arg in cmd[1:]:
        assert arg.lstrip("-").split("=")[0] in known, f"weed {cmd[0]} has no flag {arg}"
    version = subprocess.run([weed, "version"], capture_output=True, text=True, timeout=60).stdout
    assert sw["image"].split(":")[1] in version.split(), f"image tag vs tested weed: {version.strip()}"


# ---------------------------------------------------------------- prefect.yaml
def test_prefect_yaml_validates_with_prefect(prefect_yaml):
    from prefect.cli.deploy._models import PrefectYamlModel

    model = PrefectYamlModel.model_validate(prefect_yaml)
    names = [d.name for d in model.deployments]
    assert compress_deployment(prefect_yaml)["name"] in names and len(set(names)) == len(names)


def test_compress_deployment_entrypoint_parameters_schedule_limits(prefect_yaml):
    from prefect import Flow, Task
    from prefect.client.schemas.schedules import CronSchedule

    dep = compress_deployment(prefect_yaml)
    flow = load_entrypoint(dep["entrypoint"])
    assert isinstance(flow, Flow), f"{dep['entrypoint']} is not a Prefect flow"
    assert flow.name == "compress" or dep["entrypoint"].endswith(":compress")
    # parameters match the signature: only known names, every required one given, values validate
    sig = inspect.signature(flow.fn)
    params = dep.get("parameters") or {}
    assert set(params) <= set(sig.parameters), f"unknown parameters {set(params) - set(sig.parameters)}"
    required = {n for n, p in sig.parameters.items() if p.default is inspect.Parameter.empty}
    assert required <= set(params), f"scheduled runs would lack {required - set(params)}"
    flow.validate_parameters(params)
    # nightly cron schedule
    schedules = dep.get("schedules") or [dep["schedule"]]
    crons = [s for s in schedules if s and s.get("cron")]
    assert crons, "the compress deployment has no cron schedule"
    for s in crons:
        sched = CronSchedule(cron=s["cron"], timezone=s.get("timezone") or "UTC")
        from cronsim import CronSim

        it = CronSim(sched.cron, datetime(2026, 1, 1, tzinfo=timezone.utc))
        a, b = next(it), next(it)
        assert (b - a).total_seconds() == 86400, f"{s['cron']} is not once a day"
    # a work pool, a concurrency limit, retries
    assert dep["work_pool"]["name"]
    limit = dep.get("concurrency_limit")
    limit = limit.get("limit") if isinstance(limit, dict) else limit
    assert isinstance(limit, int) and limit >= 1, "the compress deployment needs a concurrency limit"
    module = importlib.import_module(flow.fn.__module__)
    retrying = [t for t in vars(module).values() if isinstance(t, Task) and (t.retries or 0) > 0]
    assert (flow.retries or 0) > 0 or retrying, "no retries on the compress flow or its tasks"


def test_every_deployment_entrypoint_is_a_flow(prefect_yaml):
    from prefect import Flow

    for dep in prefect_yaml["deployments"]:
        flow = load_entrypoint(dep["entrypoint"])
        assert isinstance(flow, Flow), dep["entrypoint"]
        sig = inspect.signature(flow.fn)
        assert set(dep.get("parameters") or {}) <= set(sig.parameters), dep["name"]


# ---------------------------------------------------------------- docs
def test_docs_table_lists_every_setting():
    text = (ROOT / "README.md").read_text()
    missing = sorted(n for n in settings_env_names() if n not in text)
    assert not missing, f"README.md (configuration table) does not document {missing}"
    readme = (INFRA / "README.md").read_text()
    assert "not built" in readme.lower()
