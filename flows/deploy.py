"""`progvc schedule`: a Prefect deployment of the `compress` flow on a cron schedule, served by this process.

`prefect.yaml` at the repository root declares the same deployment for a Prefect server + work pool
(`prefect deploy --all`); this module is the no-infrastructure path: `flow.to_deployment(...)` + a runner.
"""

from __future__ import annotations

import asyncio

from pipeline.settings import apply_environment

apply_environment()

from flows.compress import check_encoder_values, check_mode, compress  # noqa: E402

DEFAULT_CRON = "0 2 * * *"  # nightly, 02:00 in `timezone`


def compress_deployment(name: str = "nightly-compress", cron: str = DEFAULT_CRON, timezone: str = "UTC",
                        **parameters):
    """A `RunnerDeployment` of `compress` with a cron schedule and default parameters (flow signature;
    `mode`/`frame_scales` and `fidelity`/`effort` are checked now, not at the first scheduled run)."""
    from prefect.schedules import Cron

    unknown = set(parameters) - set(compress.parameters.properties)
    if unknown:
        raise TypeError(f"not parameters of the compress flow: {sorted(unknown)}")
    check_mode(parameters.get("mode") or "plain", parameters.get("frame_scales"), parameters.get("scales"))
    check_encoder_values(parameters.get("fidelity"), parameters.get("effort"))
    return compress.to_deployment(
        name=name,
        schedule=Cron(cron, timezone=timezone),
        parameters={k: v for k, v in parameters.items() if v is not None},
        description="Compress new videos under the sources into the archive (skips what is archived).",
        tags=["progvc", "archive"],
    )


def serve_compress(name: str = "nightly-compress", cron: str = DEFAULT_CRON, run_once: bool = False,
                   timezone: str = "UTC", **parameters) -> None:
    """Register the deployment and serve it (blocks; Ctrl-C stops). `timezone`: the IANA zone the cron
    fields are read in (e.g. "Europe/Berlin": 02:00 local, daylight saving followed). `run_once`: trigger one
    run now, execute it, and return when it has finished."""
    deployment = compress_deployment(name=name, cron=cron, timezone=timezone, **parameters)
    if not run_once:
        from prefect import serve

        serve(deployment)
        return
    asyncio.run(_run_once(deployment))


async def _run_once(deployment) -> None:
    from prefect.client.orchestration import get_client
    from prefect.runner import Runner

    runner = Runner(name=f"{deployment.name}-once", pause_on_shutdown=False)
    dep_id = await runner.add_deployment(deployment)
    async with get_client() as client:
        run = await client.create_flow_run_from_deployment(dep_id)
    async with runner:
        await runner.execute_flow_run(run.id)
    async with get_client() as client:
        state = (await client.read_flow_run(run.id)).state
    print(f"flow run {run.id}: {state.name if state else 'unknown'}")
    if state is None or not state.is_completed():
        raise SystemExit(1)
