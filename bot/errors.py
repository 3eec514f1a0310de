"""Exception types shared by every stage.

`InputError` is a problem with something the user handed us (a manifest, a checkpoint, a
token); the command line answers it with exit code 2. `HubbotError` is any other failure
(exit code 1). Both carry a message meant for a person, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class HubbotError(Exception):
    """A failure that hubbot explains itself (exit code 1)."""


@dataclass(frozen=True)
class Problem:
    """One problem found in an input file, located by line and column (1-based)."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class InputError(HubbotError):
    """Bad input (exit code 2). Holds every problem found, not only the first."""

    def __init__(self, problems: list[Problem] | str) -> None:
        if isinstance(problems, str):
            self.problems: list[Problem] = []
            super().__init__(problems)
        else:
            self.problems = list(problems)
            super().__init__("\n".join(str(p) for p in self.problems))
