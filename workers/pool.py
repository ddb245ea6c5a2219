"""Ray start-up and a pool of `CodecActor`s with bounded work in flight.

`ensure_ray()` joins the cluster named by `RAY_ADDRESS` (or the `address` argument), else starts an
embedded local Ray with the machine's cores. `CodecPool` creates the actors with a GPU each when the
cluster has GPUs (CPU otherwise); at most `per_actor` calls are in flight per actor across all
callers (threads), so no unbounded queue of work or results builds up. An actor that dies is
restarted by Ray (`max_restarts`) and its calls are retried (`max_task_retries`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.codec_api import CodecInfo
from pipeline.errors import ModelMismatchError, ProGVCError
from workers.requests import InfoRequest, Request

logger = logging.getLogger(__name__)

FORWARDED_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE", "PROGVC_S3_MAX_ATTEMPTS", "PROGVC_S3_RETRY_MODE",
    "PROGVC_S3_CONNECT_TIMEOUT", "PROGVC_S3_READ_TIMEOUT", "PROGVC_MODELS_DIR",
)


def local_s3_env() -> dict[str, str] | None:
    """The driver's S3 settings (and its models folder, `PROGVC_MODELS_DIR`), for actors of a Ray on this
    machine (embedded, or `RAY_ADDRESS` on loopback: same machine and user, so this is what they would
    inherit had Ray started after the settings were made). On a remote cluster the workers use their own
    environment / IAM role and nothing is forwarded."""
    address = os.environ.get("RAY_ADDRESS", "")
    host = address.split("://")[-1].rsplit(":", 1)[0]
    if address and address not in ("auto", "local") and host not in ("127.0.0.1", "localhost"):
        return None
    return {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ} or None


def ensure_ray(address: str | None = None, num_cpus: int | None = None, client_attempts: int = 3,
               client_backoff_s: float = 5.0) -> None:
    """Connect to (or start) Ray once per process.

    A Ray client address (`ray://host:port`) is tried up to `client_attempts` times, waiting
    `client_backoff_s` × attempt seconds between tries: the cluster's client proxy forks a server
    process per session, and that child can die at once ("Starting Ray client server failed", empty
    ray_client_server_<port>.err; the proxy's own log shows gRPC's `Check failed: next_worker->state ==
    KICKED`): a gRPC fork race in Ray's proxier, ray-project/ray#63202, seen here in 2 of the 3
    deploy-test runs whose logs were kept. The next try gets a fresh server on another port."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=True)
        return
    attempts = max(1, client_attempts) if address.startswith("ray://") else 1
    for attempt in range(1, attempts + 1):
        try:
            ray.init(address=address, log_to_driver=True)
            return
        except ConnectionError as exc:
            ray.shutdown()
            reason = (str(exc).strip().splitlines() or [repr(exc)])[-1]
            # only the server's "initialization failure" is worth another try; a timeout (nothing answers
            # at that address) would only time out again
            if attempt == attempts or not isinstance(exc, ConnectionAbortedError):
                raise ProGVCError(
                    f"could not connect to the Ray cluster at {address} (try {attempt} of {attempts}): {reason}. "
                    "Check that the head node runs (`ray status` there) and its ray_client_server*.err logs "
                    "(/tmp/ray/session_latest/logs)") from exc
            wait_s = client_backoff_s * attempt
            logger.warning("Ray client connection to %s failed (try %d of %d, retrying in %.0f s): %s",
                           address, attempt, attempts, wait_s, reason)
            time.sleep(wait_s)


@dataclass(frozen=True)
class ActorResources:
    """What each actor asks Ray for and the device its codec uses."""

    num_cpus: float
    num_gpus: float
    device: str


def plan_resources(n_actors: int, device: str = "auto", cluster: dict[str, float] | None = None
                   ) -> tuple[int, ActorResources]:
    """Actor count and per-actor resources from the cluster's totals (`ray.cluster_resources()` unless
    given): with GPUs, one actor per GPU by default, each asking for a GPU share (at most 1); without,
    one actor per CPU, 1 CPU each."""
    if cluster is None:
        import ray

        cluster = ray.cluster_resources()
    gpus = float(cluster.get("GPU", 0.0))
    cpus = float(cluster.get("CPU", 1.0))
    if device == "cuda" and gpus <= 0:
        raise ProGVCError("device=cuda but the Ray cluster has no GPU; use --device auto or cpu")
    if gpus > 0 and device in ("auto", "cuda"):
        n = n_actors or max(1, int(gpus))
        return n, ActorResources(num_cpus=1, num_gpus=min(1.0, gpus / n), device="cuda")
    n = n_actors or max(1, int(cpus))
    return n, ActorResources(num_cpus=1, num_gpus=0, device="cpu")


class CodecPool:
    """`n_actors` codec actors (0 = one per GPU, else one per CPU) sharing a bounded work queue.

    `model`: a model spec for `pipeline.registry.open_codec` (model id, weights path, `random:tiny:<seed>`;
    None = the default model). Every actor must load the same model (checked at start); `expect_model`
    also requires that model id (e.g. the stream's, for decoding). Work goes out as typed requests
    (`workers.requests`): `call(request)`, `map([(tag, request), ...])`."""

    def __init__(
        self,
        model: str | None,
        n_actors: int = 0,
        device: str = "auto",
        s3_endpoint: str | None = None,
        per_actor: int = 2,
        max_restarts: int = 3,
        expect_model: str | None = None,
    ):
        import ray

        from workers.codec_actor import CodecActor

        ensure_ray()
        n, self.resources = plan_resources(n_actors, device)
        remote_cls = ray.remote(CodecActor).options(
            num_cpus=self.resources.num_cpus,
            num_gpus=self.resources.num_gpus,
            max_restarts=max_restarts,
            max_task_retries=max_restarts,
            max_concurrency=1,
        )
        threads = max(1, int(self.resources.num_cpus))
        env = local_s3_env()
        self.actors = [remote_cls.remote(model, self.resources.device, threads, s3_endpoint, env) for _ in range(n)]
        self.per_actor = per_actor
        self._load = [0] * n
        self._cv = threading.Condition()
        try:
            self.infos = ray.get([a.info.remote(InfoRequest()) for a in self.actors])
        except ray.exceptions.RayTaskError as exc:  # model failed to load: show the cause
            cause = exc.cause if isinstance(getattr(exc, "cause", None), Exception) else exc
            self.close()
            raise ProGVCError(f"codec actors could not start: {cause}") from exc
        except ray.exceptions.ActorDiedError as exc:
            self.close()
            raise ProGVCError(f"codec actors could not start: {exc}") from exc
        try:
            self.codec = self._check_models(self.infos, model, expect_model)
        except ProGVCError:
            self.close()
            raise
        self.model_id: str = self.codec.model_id
        self.scales: list[int] = list(self.codec.scales)
        self.tile: int = self.codec.tile

    @staticmethod
    def _check_models(infos: list[dict], model: str | None, expect: str | None) -> CodecInfo:
        """The one model every actor loaded; ProGVCError when actors disagree (e.g. nodes with different
        weights files under one path), ModelMismatchError when it is not `expect`."""
        ids = {i["model_id"] for i in infos}
        if len(ids) > 1:
            which = ", ".join(f"{i['actor']}: {i['model_id']}" for i in infos)
            raise ProGVCError(f"codec actors loaded different models for {model or 'the default model'} ({which}); "
                              "every node must hold the same weights for it")
        first = infos[0]
        info = CodecInfo(first["model_id"], first.get("family", "vq"), tuple(first["scales"]), int(first["tile"]))
        if expect is not None and info.model_id != expect:
            raise ModelMismatchError(f"the codec actors loaded model {info.model_id} ({model}), but {expect} "
                                     f"was asked for; leave out --weights to use the stream's own model")
        return info

    @property
    def size(self) -> int:
        return len(self.actors)

    def _acquire(self, block: bool) -> int | None:
        with self._cv:
            while True:
                i = min(range(len(self._load)), key=self._load.__getitem__)
                if self._load[i] < self.per_actor:
                    self._load[i] += 1
                    return i
                if not block:
                    return None
                self._cv.wait()

    def _release(self, i: int) -> None:
        with self._cv:
            self._load[i] -= 1
            self._cv.notify_all()

    def map(self, calls: Iterable[tuple[Any, Request]]) -> Iterator[tuple[Any, Any, BaseException | None]]:
        """Send each `(tag, request)` to an actor (the method `request.method`); yield `(tag, result, error)`
        as calls finish (any order). Blocks submission while the pool is full; safe to use from many
        threads."""
        todo = iter(calls)
        pending: dict[Any, tuple[Any, int]] = {}
        try:
            yield from self._map_loop(todo, pending)
        finally:  # a caller that stops early gives its slots back
            for _, slot in pending.values():
                self._release(slot)

    def _map_loop(self, todo: Iterator, pending: dict) -> Iterator[tuple[Any, Any, BaseException | None]]:
        import ray

        exhausted = False
        while True:
            while not exhausted:
                slot = self._acquire(block=not pending)
                if slot is None:
                    break
                try:
                    tag, req = next(todo)
                except StopIteration:
                    self._release(slot)
                    exhausted = True
                    break
                ref = getattr(self.actors[slot], req.method).remote(req)
                pending[ref] = (tag, slot)
            if not pending:
                return
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.05 if not exhausted else None)
            for ref in ready:
                tag, slot = pending.pop(ref)
                self._release(slot)
                try:
                    yield tag, ray.get(ref), None
                except ray.exceptions.RayTaskError as exc:
                    cause = getattr(exc, "cause", None)
                    yield tag, None, cause if isinstance(cause, BaseException) else exc
                except ray.exceptions.RayError as exc:
                    yield tag, None, exc

    def call(self, request: Request) -> Any:
        """One request on the least-loaded actor; raises its error."""
        for _, result, error in self.map([(None, request)]):
            if error is not None:
                raise error
            return result
        raise RuntimeError("unreachable")

    def close(self) -> None:
        import ray

        try:  # best effort: remove downloaded sources before the processes go
            ray.wait([a.cleanup.remote() for a in self.actors], num_returns=len(self.actors), timeout=10)
        except Exception:  # noqa: BLE001 - dead actors have nothing to clean
            pass
        for a in self.actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:  # noqa: BLE001 - already dead is fine
                pass
        self.actors = []
