"""The manifest's words for evaluation text, the evaluation budget and the quality floor.

These pydantic models are part of the manifest schema (`bot.manifest` embeds them); the
code that acts on them lives beside this module in `bot.quality`.

    evaluation:                 # the release's evaluation settings
      tokens: 32768             # scored tokens per text set (domain text, general text)
      sequence_length: 512      # tokens per window the text is cut into
      general: {files: [general.txt]}
    quality: {max_kl: 0.5, min_top1: 0.6}   # the floor a published variant must meet
    domains:
      - id: math
        evaluation: {prompts: ["What is 2 + 2? 4"]}
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.selection.spec import DatasetTexts


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EvalTexts(_Strict):
    """Evaluation text: `prompts`, then `files` (UTF-8, relative to the manifest), then the
    `dataset` column, as for calibration."""

    prompts: list[str] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)
    dataset: DatasetTexts | None = None

    @model_validator(mode="after")
    def _some_text(self) -> EvalTexts:
        if not self.prompts and not self.files and self.dataset is None:
            raise ValueError("evaluation text needs 'prompts', 'files' or 'dataset'")
        return self


class EvaluationSpec(_Strict):
    """How variants are measured against the base model.

    Each text set (a domain's own text, the `general` text) is tokenized, cut into windows of
    `sequence_length` tokens and scored on its first `tokens` next-token predictions.
    """

    tokens: int = Field(default=32768, ge=1, description="scored tokens per text set")
    sequence_length: int = Field(default=512, ge=2, le=131072)
    batch_size: int = Field(default=8, ge=1, description="windows per forward pass")
    general: EvalTexts | None = Field(
        default=None, description="text every variant is also measured on"
    )


class QualityFloor(_Strict):
    """The least a variant must keep, on its own domain's evaluation text, to be published."""

    max_kl: float | None = Field(
        default=None, ge=0, description="highest mean KL(base || variant), nats per token"
    )
    min_top1: float | None = Field(
        default=None, ge=0, le=1, description="lowest top-1 agreement with the base"
    )

    @model_validator(mode="after")
    def _some_bound(self) -> QualityFloor:
        if self.max_kl is None and self.min_top1 is None:
            raise ValueError("a quality floor needs 'max_kl' or 'min_top1'")
        return self
