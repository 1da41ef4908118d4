"""A SageMaker-style code/inference.py: model_fn, input_fn, predict_fn, output_fn (or transform_fn).

Hooks the module does not define fall back to the container's defaults, as in SageMaker's framework
containers: model_fn loads the folder as a Hugging Face model, input_fn decodes JSON/CSV/text,
predict_fn runs that model (or calls a callable model), output_fn encodes JSON/CSV per Accept. Requests
run one at a time per worker on one thread: user code need not be thread-safe.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

from serving.content_types import decode, encode, negotiate, to_invocation
from serving.errors import ModelLoadError
from serving.handlers.base import Reply
from serving.predictors.base import Predictor

HOOKS = ("model_fn", "input_fn", "predict_fn", "output_fn", "transform_fn")


def import_user_module(path: Path) -> ModuleType:
    code_dir = str(path.parent)
    if code_dir not in sys.path:
        # Helpers next to inference.py import as they would under SageMaker.
        sys.path.insert(0, code_dir)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ModelLoadError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


class CustomCodeModel:
    def __init__(self, module: ModuleType, model: Any, default_accept: str) -> None:
        self.module = module
        self.model = model
        self.default_accept = default_accept
        self.hooks = {name: getattr(module, name) for name in HOOKS if callable(getattr(module, name, None))}
        defined = ", ".join(name for name in HOOKS if name in self.hooks) or "no hooks"
        self.description = f"custom handler {module.__file__} ({defined})"
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")

    async def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> Reply:
        if self._executor is None:
            raise RuntimeError("CustomCodeModel.invoke called before start()")
        if "output_fn" not in self.hooks and "transform_fn" not in self.hooks:
            # Refuse an Accept the default output_fn cannot write before spending time on the model.
            negotiate(accept, self.default_accept)
        if not accept or accept.strip() in ("*/*", ""):
            accept = self.default_accept
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._handle, body, content_type, accept)

    def _handle(self, body: bytes, content_type: str | None, accept: str) -> Reply:
        content_type = content_type or "application/json"
        if "transform_fn" in self.hooks:
            result = self.hooks["transform_fn"](self.model, body, content_type, accept)
        else:
            data = self._hook("input_fn", self._default_input_fn)(body, content_type)
            prediction = self._hook("predict_fn", self._default_predict_fn)(data, self.model)
            result = self._hook("output_fn", self._default_output_fn)(prediction, accept)
        return _reply(result, accept)

    def _hook(self, name: str, default: Callable[..., Any]) -> Callable[..., Any]:
        return self.hooks.get(name, default)

    def _default_input_fn(self, body: bytes, content_type: str) -> Any:
        return decode(body, content_type)

    def _default_predict_fn(self, data: Any, model: Any) -> Any:
        if isinstance(model, DefaultModel):
            invocation = to_invocation(data)
            return model(
                invocation.inputs[0] if invocation.single else invocation.inputs, **invocation.parameters
            )
        if callable(model):
            return model(data)
        raise TypeError(
            f"code/inference.py defines no predict_fn and its model_fn returned a {type(model).__name__}, "
            "which is not callable; define predict_fn(data, model) in code/inference.py"
        )

    def _default_output_fn(self, prediction: Any, accept: str) -> tuple[bytes, str]:
        kind = negotiate(accept, self.default_accept)
        return encode(prediction, kind), kind


class DefaultModel:
    """What the default model_fn returns. It is called like a transformers pipeline,
    `model(inputs, **parameters)`, so a predict_fn written for SageMaker's Hugging Face container works."""

    def __init__(self, predictor: Predictor, max_batch_size: int) -> None:
        self.predictor = predictor
        self.task = predictor.task
        self.max_batch_size = max_batch_size

    def __call__(self, inputs: Any, **parameters: Any) -> Any:
        invocation = to_invocation({"inputs": inputs, "parameters": parameters})
        self.predictor.check(invocation.inputs, invocation.parameters)
        outputs: list[Any] = []
        for start in range(0, len(invocation.inputs), self.max_batch_size):
            chunk = invocation.inputs[start : start + self.max_batch_size]
            outputs.extend(self.predictor.predict(chunk, invocation.parameters))
        return outputs[0] if invocation.single else outputs


def _reply(result: Any, accept: str) -> Reply:
    # Like SageMaker's toolkit: output_fn may return the body, or (body, content_type).
    content_type = accept
    if isinstance(result, tuple) and len(result) == 2:
        result, content_type = result
    if isinstance(result, str):
        result = result.encode()
    if not isinstance(result, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"output_fn returned a {type(result).__name__}; "
            "it must return bytes or str, or a (body, content_type) tuple"
        )
    return Reply(bytes(result), str(content_type))


def load_custom_code(
    path: Path,
    model_dir: Path,
    load_default: Callable[[], Predictor],
    default_accept: str,
    max_batch_size: int,
) -> CustomCodeModel:
    module = import_user_module(path)
    model_fn = getattr(module, "model_fn", None)
    if callable(model_fn):
        try:
            model = model_fn(str(model_dir))
        except Exception as exc:
            raise ModelLoadError(f"model_fn in {path} failed: {type(exc).__name__}: {exc}") from exc
    else:
        try:
            model = DefaultModel(load_default(), max_batch_size)
        except ModelLoadError as exc:
            raise ModelLoadError(
                f"{path} defines no model_fn, so {model_dir} must hold a Hugging Face model, but: {exc}"
            ) from exc
    return CustomCodeModel(module, model, default_accept)
