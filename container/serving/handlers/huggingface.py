"""A Hugging Face model folder: decode, check, batch with other requests, encode."""

from __future__ import annotations

from serving.batcher import DynamicBatcher
from serving.content_types import JSON, decode, encode, negotiate, to_invocation
from serving.handlers.base import Reply
from serving.predictors.base import Predictor


class HuggingFaceModel:
    def __init__(
        self, predictor: Predictor, max_batch_size: int, max_delay_s: float, default_accept: str
    ) -> None:
        self.predictor = predictor
        self.description = f"Hugging Face {predictor.task} ({type(predictor).__name__})"
        self.default_accept = default_accept
        self._max_batch_size = max_batch_size
        self._max_delay_s = max_delay_s
        self.batcher: DynamicBatcher | None = None

    async def start(self) -> None:
        self.batcher = DynamicBatcher(self.predictor, self._max_batch_size, self._max_delay_s)
        self.batcher.start()

    async def stop(self) -> None:
        if self.batcher is not None:
            await self.batcher.stop()

    async def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> Reply:
        if self.batcher is None:
            raise RuntimeError("HuggingFaceModel.invoke called before start()")
        kind = negotiate(accept, self.default_accept)
        invocation = to_invocation(decode(body, content_type))
        self.predictor.check(invocation.inputs, invocation.parameters)
        outputs = await self.batcher.submit(invocation.inputs, invocation.parameters)
        # CSV is always one row per input; JSON mirrors the request: one input in, one output out.
        prediction = outputs[0] if invocation.single and kind == JSON else outputs
        return Reply(encode(prediction, kind), kind)
