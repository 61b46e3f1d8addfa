"""One model, one worker thread: generation jobs run one at a time, in arrival order, never mixed.

The web layer submits a request's jobs with an ``emit`` callback each and gets back cancel events; the worker
calls ``emit`` with each ``GenerationStep``, then ``None`` when the job ends (or the exception that ended it). A
set cancel event stops the job before its next forward pass. The queue is bounded: jobs beyond
``max_queued_jobs`` waiting are refused whole (``QueueFullError``, which the server answers with a 429 and
``Retry-After``). An artifact that does not fit the model is refused when the engine is made, before any server
binds. Nothing here imports FastAPI.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field

from amygdala.artifact import ReadoutArtifact, check_fits_model
from amygdala.errors import AmygdalaError
from amygdala.forward.models import LoadedModel
from amygdala.readout.attach import AttachedReadout, attach
from amygdala.readout.generation import GenerationStep, SamplingOptions, generate
from amygdala.readout.projection import ReadoutOptions, projector_for

logger = logging.getLogger(__name__)

Emit = Callable[[GenerationStep | BaseException | None], None]


@dataclass(frozen=True)
class ServeOptions:
    """What the server offers and the bounds it enforces on every request."""

    #: The model id that ``GET /v1/models`` lists and every response carries.
    model_name: str = "amygdala"
    #: Bearer token every ``/v1`` request must present; None leaves the server open (bind to loopback then).
    api_key: str | None = None
    #: Most tokens a prompt (after the chat template) may have.
    max_prompt_tokens: int = 2048
    #: Most tokens a request may ask to generate per choice.
    max_tokens: int = 512
    #: Tokens generated per choice when a request gives no ``max_tokens``.
    default_max_tokens: int = 16
    #: Most choices per request (``n`` times the number of prompts).
    max_choices: int = 4
    #: Largest request body in bytes, refused with a 413 before it is parsed or tokenised, so an oversized prompt
    #: cannot stall the server; None: 64 bytes per allowed prompt token, at least 1 MiB.
    max_request_bytes: int | None = None
    #: Server-wide steering (concept -> alpha); a request's ``steer`` overrides it per concept.
    steer: Mapping[str, float] = field(default_factory=dict)
    #: Layers that steer by default; None steers at every hooked layer.
    steer_layers: tuple[int, ...] | None = None
    #: Serve the live page at ``GET /ui`` (behind ``api_key`` when one is set).
    ui: bool = False
    #: Most generation jobs (choices) waiting in the engine's queue; beyond it a request gets a 429 with
    #: ``Retry-After`` (used by ``serve.run.serve_model``; an ``Engine`` made by hand takes it as an argument).
    max_queued_jobs: int = 256


    def request_byte_limit(self) -> int:
        """``max_request_bytes``, or its default for ``max_prompt_tokens``."""
        if self.max_request_bytes is not None:
            return self.max_request_bytes
        return max(1 << 20, 64 * self.max_prompt_tokens)


@dataclass(frozen=True)
class GenerationJob:
    """One choice to generate: its prompt, sampling, and whether (and how) to read out and steer."""

    prompt_ids: tuple[int, ...]
    sampling: SamplingOptions
    readout: bool
    options: ReadoutOptions


@dataclass(frozen=True)
class JobRecord:
    """How a finished job went (kept for the last few hundred jobs, e.g. to check cancellation)."""

    prompt_tokens: int
    generated_tokens: int
    finish_reason: str | None
    cancelled: bool
    seconds: float = 0.0


class QueueFullError(RuntimeError):
    """The engine's queue has no room for a request's jobs; ``retry_after_s`` estimates when it will."""

    def __init__(self, waiting: int, limit: int, retry_after_s: int) -> None:
        super().__init__(f"the server is busy: {waiting} generation jobs are waiting (at most {limit}); "
                         f"retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


DEFAULT_MAX_QUEUED_JOBS = ServeOptions.max_queued_jobs


class Engine:
    """Owns the model; runs submitted jobs one at a time on its worker thread, at most ``max_queued_jobs``
    waiting. Refuses (``ArtifactError``/``ReadoutError``) an artifact whose hidden size, layers or vectors (zero
    or not unit length) do not fit ``loaded``, as the offline readout does."""

    def __init__(self, loaded: LoadedModel, artifact: ReadoutArtifact | None, *,
                 max_queued_jobs: int = DEFAULT_MAX_QUEUED_JOBS) -> None:
        if artifact is not None:
            check_fits_model(artifact, n_layers=loaded.n_layers, hidden_size=loaded.hidden_size,
                             model_id=loaded.model_id)
            projector_for(artifact)  # unit-length rows: zero vectors would answer every request with an error
        if max_queued_jobs < 1:
            raise AmygdalaError(f"max_queued_jobs {max_queued_jobs} must be at least 1 (--max-queue)")
        self.loaded = loaded
        self.artifact = artifact
        self.max_queued_jobs = max_queued_jobs
        self.history: deque[JobRecord] = deque(maxlen=256)
        self._jobs: queue.Queue[tuple[GenerationJob, Emit, threading.Event] | None] = queue.Queue()
        self._waiting = 0
        self._waiting_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="amygdala-engine", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Finish the running job's current step, drop queued ones, and stop the worker."""
        if self._thread is not None:
            self._closing.set()
            self._jobs.put(None)
            self._thread.join()
            self._thread = None
            self._closing.clear()

    def submit(self, job: GenerationJob, emit: Emit, cancel: threading.Event | None = None) -> threading.Event:
        """Queue ``job``; set the returned event (``cancel`` if given) to cancel it, before or while it runs."""
        cancel = cancel if cancel is not None else threading.Event()
        self.submit_all([(job, emit, cancel)])
        return cancel

    def submit_all(self, items: list[tuple[GenerationJob, Emit, threading.Event]]) -> None:
        """Queue every job of one request, or none: ``QueueFullError`` when they do not all fit."""
        self.start()
        with self._waiting_lock:
            if self._waiting + len(items) > self.max_queued_jobs:
                raise QueueFullError(self._waiting, self.max_queued_jobs, self._retry_after_s())
            self._waiting += len(items)
            for item in items:
                self._jobs.put(item)

    def _retry_after_s(self) -> int:
        """Seconds until the queue has drained a while: the waiting jobs times the recent mean job time."""
        recent = [record.seconds for record in list(self.history)[-32:]]
        mean = sum(recent) / len(recent) if recent else 1.0
        return max(1, min(60, math.ceil(self._waiting * mean)))

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, emit, cancel = item
            with self._waiting_lock:
                self._waiting -= 1
            if self._closing.is_set():
                cancel.set()
            try:
                self.history.append(self._run(job, emit, cancel))
                emit(None)
            except Exception as exc:  # noqa: BLE001 - reported to the waiting request, which answers 500
                logger.exception("generation failed")
                emit(exc)

    def _run(self, job: GenerationJob, emit: Emit, cancel: threading.Event) -> JobRecord:
        count, finish, start = 0, None, time.perf_counter()
        with ExitStack() as stack:
            reader: AttachedReadout | None = None
            if self.artifact is not None and (job.readout or job.options.steer):
                reader = stack.enter_context(attach(self.loaded, self.artifact, job.options, collect=job.readout))
            stopped = lambda: cancel.is_set() or self._closing.is_set()  # noqa: E731
            for step in generate(self.loaded, job.prompt_ids, job.sampling, reader=reader, cancelled=stopped):
                count, finish = count + 1, step.finish_reason
                emit(step)
        return JobRecord(len(job.prompt_ids), count, finish, finish is None, time.perf_counter() - start)
