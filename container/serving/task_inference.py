"""Which task a Hugging Face model folder serves: HF_TASK when set, else what the folder says."""

from __future__ import annotations

from pathlib import Path

from serving.errors import ModelLoadError
from serving.predictors import pipelines, seq2seq
from serving.predictors.hf_files import read_json
from serving.predictors.sentence_embeddings import is_sentence_transformers

ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification"}
SERVED_TASKS = ("feature-extraction", *seq2seq.TASKS, *pipelines.TASKS)
# Architecture name suffix -> task, checked in order.
_ARCHITECTURE_SUFFIXES = (
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForMaskedLM", "fill-mask"),
    ("ForCausalLM", "text-generation"),
    ("LMHeadModel", "text-generation"),
    ("ForConditionalGeneration", "text2text-generation"),
    ("ForSeq2SeqLM", "text2text-generation"),
    ("Model", "feature-extraction"),
)


def resolve_task(folder: Path, hf_task: str | None) -> str:
    if hf_task:
        task = ALIASES.get(hf_task, hf_task)
        if task in SERVED_TASKS or task.startswith("translation_"):
            return task
        raise ModelLoadError(
            f"HF_TASK={hf_task} is not served by this container; use one of {', '.join(SERVED_TASKS)}, "
            "or serve the model with a code/inference.py"
        )
    if is_sentence_transformers(folder):
        return "feature-extraction"
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelLoadError(
            f"{folder} has no config.json, no sentence-transformers modules.json and no code/inference.py; "
            "mount a Hugging Face model folder (save_pretrained output) or add code/inference.py"
        )
    config = read_json(config_path)
    architectures = config.get("architectures") or []
    for architecture in architectures:
        for suffix, task in _ARCHITECTURE_SUFFIXES:
            if architecture.endswith(suffix):
                if task != "text2text-generation":
                    return task
                # Vision/speech models end in ForConditionalGeneration too; only encoder-decoders fit.
                if config.get("is_encoder_decoder"):
                    return _seq2seq_task(config)
    raise ModelLoadError(
        f"cannot tell the task from {config_path} (architectures: {architectures or 'none'}); "
        f"set HF_TASK to one of {', '.join(SERVED_TASKS)}"
    )


def _seq2seq_task(config: dict[str, object]) -> str:
    # A checkpoint fine-tuned for one seq2seq task names only that task in task_specific_params.
    specific = config.get("task_specific_params")
    if isinstance(specific, dict) and list(specific) == ["summarization"]:
        return "summarization"
    return "text2text-generation"
