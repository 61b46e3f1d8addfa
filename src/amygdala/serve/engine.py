"""One model, one worker thread: generation jobs run one at a time, in arrival order, never mixed.

The web layer submits a job with an ``emit`` callback and gets back a cancel event; the worker calls ``emit``
with each ``GenerationStep``, then ``None`` when the job ends (or the exception that ended it). A set cancel
event stops the job before its next forward pass. Nothing here imports FastAPI.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field

from amygdala.artifact import ReadoutArtifact
from amygdala.generation import GenerationStep, SamplingOptions, generate
from amygdala.models import LoadedModel
from amygdala.readout import AttachedReadout, ReadoutOptions, attach

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


class Engine:
    """Owns the model; runs submitted jobs one at a time on its worker thread."""

    def __init__(self, loaded: LoadedModel, artifact: ReadoutArtifact | None) -> None:
        self.loaded = loaded
        self.artifact = artifact
        self.history: deque[JobRecord] = deque(maxlen=256)
        self._jobs: queue.Queue[tuple[GenerationJob, Emit, threading.Event] | None] = queue.Queue()
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
        self.start()
        cancel = cancel if cancel is not None else threading.Event()
        self._jobs.put((job, emit, cancel))
        return cancel

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, emit, cancel = item
            if self._closing.is_set():
                cancel.set()
            try:
                self.history.append(self._run(job, emit, cancel))
                emit(None)
            except Exception as exc:  # noqa: BLE001 - reported to the waiting request, which answers 500
                logger.exception("generation failed")
                emit(exc)

    def _run(self, job: GenerationJob, emit: Emit, cancel: threading.Event) -> JobRecord:
        count, finish = 0, None
        with ExitStack() as stack:
            reader: AttachedReadout | None = None
            if self.artifact is not None and (job.readout or job.options.steer):
                reader = stack.enter_context(attach(self.loaded, self.artifact, job.options, collect=job.readout))
            stopped = lambda: cancel.is_set() or self._closing.is_set()  # noqa: E731
            for step in generate(self.loaded, job.prompt_ids, job.sampling, reader=reader, cancelled=stopped):
                count, finish = count + 1, step.finish_reason
                emit(step)
        return JobRecord(len(job.prompt_ids), count, finish, finish is None)
