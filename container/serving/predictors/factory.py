"""The predictor for a Hugging Face model folder and a task."""

from __future__ import annotations

from pathlib import Path

from serving.device import Placement
from serving.predictors.base import Predictor
from serving.predictors.pipelines import PipelinePredictor
from serving.predictors.sentence_embeddings import SentenceEmbedder, is_sentence_transformers
from serving.predictors.seq2seq import Seq2SeqGenerator, is_seq2seq_task
from serving.predictors.token_features import TokenFeatures


def build_predictor(
    folder: Path, task: str, placement: Placement, max_batch_size: int, pack_sequences: bool = True
) -> Predictor:
    if task == "feature-extraction":
        if is_sentence_transformers(folder):
            return SentenceEmbedder(folder, placement, pack_sequences)
        return TokenFeatures(folder, placement, pack_sequences)
    if is_seq2seq_task(task):
        return Seq2SeqGenerator(folder, task, placement)
    return PipelinePredictor(folder, task, placement, max_batch_size)
