"""Text tasks served by a transformers pipeline, called with the whole batch at once."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from serving.errors import BadRequest, ModelLoadError
from serving.predictors.base import require_texts

TASKS = (
    "text-classification",
    "token-classification",
    "fill-mask",
    "zero-shot-classification",
    "text-generation",
)


class PipelinePredictor:
    def __init__(self, folder: Path, task: str, device: torch.device, batch_size: int) -> None:
        from transformers import AutoTokenizer
        from transformers import pipeline as make_pipeline

        self.task = task
        self.batch_size = batch_size
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            if task == "text-generation" and tokenizer.pad_token is None:
                # Batched generation pads on the left with EOS when the model defines no pad token.
                tokenizer.pad_token = tokenizer.eos_token
                tokenizer.padding_side = "left"
            # Any: the task is only known at run time, so pipeline()'s per-task overloads cannot apply.
            build: Any = make_pipeline
            self.pipeline = build(
                task,
                model=str(folder),
                tokenizer=tokenizer,
                device=device,
                model_kwargs={"local_files_only": True},
            )
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelLoadError(f"cannot build the {task} pipeline from {folder}: {exc}") from exc

    def check(self, inputs: list[Any], parameters: Mapping[str, Any]) -> None:
        if self.task == "text-classification":
            # Text pairs are objects {"text": ..., "text_pair": ...}, as the pipeline takes them.
            for number, item in enumerate(inputs):
                if isinstance(item, dict) and not (
                    set(item) <= {"text", "text_pair"}
                    and all(isinstance(v, str) for v in item.values())
                    and "text" in item
                ):
                    raise BadRequest(
                        f'inputs[{number}] must be a string or {{"text": ..., "text_pair": ...}} of strings'
                    )
            require_texts([item for item in inputs if not isinstance(item, dict)], self.task)
        else:
            require_texts(inputs, self.task)
        if self.task == "zero-shot-classification":
            labels = parameters.get("candidate_labels")
            if not labels or not (isinstance(labels, str) or all(isinstance(label, str) for label in labels)):
                raise BadRequest(
                    "zero-shot-classification needs parameters.candidate_labels, "
                    'e.g. {"candidate_labels": ["a", "b"]}'
                )

    def predict(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        outputs = self.pipeline(list(inputs), batch_size=min(len(inputs), self.batch_size), **parameters)
        return list(outputs)
