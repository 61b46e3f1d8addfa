"""A vLLM CPU worker whose model runner loads the model with a ``load_model`` of its own, as Model Runner V2 does
(``vllm.v1.worker.gpu.model_runner.GPUModelRunner`` is not a subclass of the V1 runner the plugin wraps). Passed as
``worker_cls`` by ``test_runner.py``: the plugin must refuse to start such an engine."""

from __future__ import annotations

from vllm.model_executor.model_loader import get_model
from vllm.v1.worker.cpu_model_runner import CPUModelRunner
from vllm.v1.worker.cpu_worker import CPUWorker


class OwnLoadRunner(CPUModelRunner):
    def load_model(self, load_dummy_weights: bool = False) -> None:
        self.model = get_model(vllm_config=self.vllm_config)


class UnhookedWorker(CPUWorker):
    def init_device(self) -> None:
        super().init_device()
        self.model_runner.__class__ = OwnLoadRunner
