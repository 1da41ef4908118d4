"""summarization, text2text-generation and translation with an encoder-decoder model.

transformers 5 dropped these pipelines; this keeps their contract: the task's prefix and generation
defaults from config.task_specific_params, and one {"summary_text" | "generated_text" |
"translation_text": …} per input (a list of them when num_return_sequences > 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from serving.device import Placement
from serving.errors import BadRequest
from serving.predictors.base import require_texts
from serving.predictors.hf_files import load_model, load_tokenizer

TASKS = ("summarization", "text2text-generation", "translation")
_OUTPUT_KEYS = {
    "summarization": "summary_text",
    "text2text-generation": "generated_text",
    "translation": "translation_text",
}
# Parameters the task config may carry that are not generation options.
_NOT_GENERATION = {"prefix"}


def is_seq2seq_task(task: str) -> bool:
    return task in TASKS or task.startswith("translation_")


class Seq2SeqGenerator:
    def __init__(self, folder: Path, task: str, placement: Placement) -> None:
        from transformers import AutoModelForSeq2SeqLM, GenerationConfig

        self.task = task
        self.output_key = _OUTPUT_KEYS["translation" if task.startswith("translation") else task]
        self.device = placement.device
        self.tokenizer = load_tokenizer(folder)
        self.model = load_model(AutoModelForSeq2SeqLM, folder, placement)
        specific = dict((getattr(self.model.config, "task_specific_params", None) or {}).get(task, {}))
        self.prefix = str(specific.get("prefix") or getattr(self.model.config, "prefix", None) or "")
        self.defaults = {key: value for key, value in specific.items() if key not in _NOT_GENERATION}
        # A tokenizer without a real length limit reports int(1e30); asking it to truncate only warns.
        self.truncate = int(getattr(self.tokenizer, "model_max_length", 0) or 0) < 1_000_000
        self.generation_options = set(GenerationConfig().to_dict()) | {"max_new_tokens", "min_new_tokens"}

    def check(self, inputs: list[Any], parameters: Mapping[str, Any]) -> None:
        require_texts(inputs, self.task)
        unknown = sorted(set(parameters) - self.generation_options)
        if unknown:
            raise BadRequest(
                f"parameters {unknown} are not generation options of {self.task}; "
                "use generate() options such as max_new_tokens, num_beams, do_sample, num_return_sequences"
            )
        count = parameters.get("num_return_sequences", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise BadRequest("parameters.num_return_sequences must be a whole number ≥ 1")

    def predict(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        options = {**self.defaults, **parameters}
        count = int(options.get("num_return_sequences", 1))
        encoded = self.tokenizer(
            [self.prefix + str(text) for text in inputs],
            padding=True,
            truncation=self.truncate,
            return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode():
            generated = self.model.generate(**encoded, **options)
        texts = self.tokenizer.batch_decode(
            generated, skip_special_tokens=True, clean_up_tokenization_spaces=True
        )
        outputs = [{self.output_key: text} for text in texts]
        if count == 1:
            return outputs
        return [outputs[start : start + count] for start in range(0, len(outputs), count)]
