"""Rich progress for long jobs: one bar for the job (videos) and one per video being encoded (frames)."""

from __future__ import annotations

import threading

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class JobProgress:
    """Thread-safe: many video tasks update it at once. Renders to stderr; quiet when `enabled` is False."""

    def __init__(self, job_id: str, n_videos: int, enabled: bool = True):
        from rich.console import Console

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not enabled,
            transient=False,
            refresh_per_second=4,
        )
        self.job = self.progress.add_task(f"{job_id} videos", total=n_videos)
        self.videos: dict[str, int] = {}
        self.lock = threading.Lock()

    def __enter__(self) -> JobProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def add_video(self, video_id: str, frames: int) -> None:
        with self.lock:
            self.videos[video_id] = self.progress.add_task(f"  {video_id} frames", total=frames)

    def advance(self, video_id: str, frames: int) -> None:
        with self.lock:
            task = self.videos.get(video_id)
        if task is not None:
            self.progress.advance(task, frames)

    def video_done(self, video_id: str) -> None:
        with self.lock:
            task = self.videos.pop(video_id, None)
        if task is not None:
            self.progress.remove_task(task)
        self.progress.advance(self.job, 1)
