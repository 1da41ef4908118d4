"""Text tasks served by a transformers pipeline, called with the whole batch at once."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from serving.device import Placement
from serving.errors import BadRequest, ModelLoadError
from serving.predictors.base import require_texts
from serving.predictors.hf_files import load_model, load_tokenizer

TASKS = (
    "text-classification",
    "token-classification",
    "fill-mask",
    "zero-shot-classification",
    "text-generation",
)


# The model class each task's pipeline runs; loaded here so nothing but local files is ever read.
_MODEL_CLASSES = {
    "text-classification": "AutoModelForSequenceClassification",
    "zero-shot-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "fill-mask": "AutoModelForMaskedLM",
    "text-generation": "AutoModelForCausalLM",
}


class PipelinePredictor:
    def __init__(self, folder: Path, task: str, placement: Placement, batch_size: int) -> None:
        import transformers

        self.task = task
        self.batch_size = batch_size
        tokenizer = load_tokenizer(folder)
        if task == "text-generation" and tokenizer.pad_token is None:
            # Batched generation pads on the left with EOS when the model defines no pad token.
            tokenizer.pad_token = tokenizer.eos_token
            tokenizer.padding_side = "left"
        model = load_model(getattr(transformers, _MODEL_CLASSES[task]), folder, placement)
        try:
            # Any: the task is only known at run time, so pipeline()'s per-task overloads cannot apply.
            build: Any = transformers.pipeline
            self.pipeline = build(task, model=model, tokenizer=tokenizer, device=placement.device)
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
        if self.task == "fill-mask" and len(inputs) == 1:
            # FillMaskPipeline unwraps a one-element list; every other pipeline answers a list per list.
            return [outputs]
        return list(outputs)
