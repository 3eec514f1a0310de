"""The manifest's words for where expert statistics come from and how experts are chosen.

These pydantic models are part of the manifest schema (`bot.manifest` embeds them in each
domain); the code that acts on them lives beside this module in `bot.selection`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FingerprintStatistics(_Strict):
    """Public activation summaries (the GPT-OSS expert fingerprinting study's format).

    `subsets` is an ordered list of `<benchmark>/<category>` names, or `"*"` for every
    summary file. `path` is a folder in the study's layout; left out, the compact copy that
    ships with hubbot is used.
    """

    source: Literal["fingerprints"]
    subsets: list[str] | Literal["*"]
    path: str | None = None


class DatasetTexts(_Strict):
    """A `datasets` dataset to calibrate on: name, optional config, split and text column.

    `name` is a Hub dataset id (pin it with `revision`), a builder such as `json` or `csv`
    with `data_files` (paths relative to the manifest), or a folder written by
    `Dataset.save_to_disk` (relative to the manifest).
    """

    name: str
    config: str | None = None
    revision: str | None = None
    data_files: list[str] = Field(default_factory=list)
    split: str = "train"
    column: str = "text"
    limit: int | None = Field(default=None, ge=1)


class CalibrationStatistics(_Strict):
    """Statistics measured by running the base model over texts with router hooks.

    The texts are `prompts`, then `files` (each file one UTF-8 text, relative to the
    manifest), then the `dataset` column; each is cut to `max_tokens` tokens.
    """

    source: Literal["calibration"]
    prompts: list[str] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)
    dataset: DatasetTexts | None = None
    max_tokens: int = Field(default=512, ge=1)


class FileStatistics(_Strict):
    """Statistics saved earlier by hubbot (`hubbot scores --save`)."""

    source: Literal["file"]
    path: str


StatisticsSpec = Annotated[
    FingerprintStatistics | CalibrationStatistics | FileStatistics,
    Field(discriminator="source"),
]


class SelectionSpec(_Strict):
    """How a domain's ranking becomes kept experts.

    - `frequency`: top-N per layer by top-k selection count;
    - `router_mass`: top-N per layer by summed router probability;
    - `interleave`: this domain's ranking alternated with the ranking of domain `with`;
    - `inverse`: the reverse of domain `of`'s final list.
    """

    strategy: Literal["frequency", "router_mass", "interleave", "inverse"] = "frequency"
    with_: str | None = Field(default=None, alias="with")
    of: str | None = None
