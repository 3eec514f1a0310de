"""The manifest's `generation` block: how the example prompts on each card are run.

Owned by the example-run stage (`bot.examples`) and composed into the manifest schema
(`bot.manifest.schema`), so running examples needs no manifest.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class GenerationSpec(BaseModel):
    """Settings of the example runs shown on each card."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    max_new_tokens: int = Field(default=512, ge=1, le=32768)
    reasoning_effort: Literal["low", "medium", "high"] = "medium"
    sampling: Literal["greedy", "seeded"] = "greedy"
    seed: int = 0
    temperature: float = Field(default=1.0, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
