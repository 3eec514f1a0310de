"""hubbot's one progress display: a rich bar on stderr, with units, on a terminal only.

In a log (stderr not a terminal) nothing is drawn: a bar there would leave blank lines.

Example:
    >>> with steps("calibrating routers", total=3, unit="texts") as advance:  # doctest: +SKIP
    ...     for text in texts:
    ...         advance()
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def steps(
    description: str, *, total: int, unit: str, enabled: bool = True
) -> Iterator[Callable[..., None]]:
    """A bar `description ━━━ 3/24 unit 0:00:01`, gone when done; yields `advance(n=1)`."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn(f"{{task.completed}}/{{task.total}} {unit}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not (enabled and console.is_terminal),
    )
    with bar:
        task = bar.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        yield advance
