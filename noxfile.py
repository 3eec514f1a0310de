"""hubbot's task list. Every CI job calls one of these sessions; workflows hold no logic.

nox -s tests                       # the whole test suite
nox -s lint                        # ruff
nox -s demo                        # build and publish the demo release to a local Hub
nox -s plan -- manifests/gpt-oss-20b.yaml
nox -s eval -- manifests/demo.yaml --save quality.json   # figures for --quality below
nox -s matrix -- manifests/gpt-oss-20b.yaml --group domain   # CI jobs of one domain each
nox -s publish -- manifests/gpt-oss-20b.yaml --variant science-16
nox -s publish -- manifests/gpt-oss-20b.yaml --variant science-4,science-5   # one job
nox -s cards -- manifests/gpt-oss-20b.yaml [--quality quality.json]
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"
CONSTRAINTS = ("-c", "constraints.txt")


def _install(session: nox.Session, extras: str = "") -> None:
    location = getattr(session.virtualenv, "location", None)
    if location and not any(Path(location).glob("lib/python*/site-packages/torch/__init__.py")):
        where = Path(location).resolve()
        shown = where.relative_to(Path.cwd()) if where.is_relative_to(Path.cwd()) else where
        session.log(
            "first run: installing torch, transformers and the other pinned dependencies "
            f"into {shown} (about 1 GB, a minute or two); later runs reuse it"
        )
    session.install(*CONSTRAINTS, "-e", f".{extras}")


def _browser(session: nox.Session) -> None:
    """The page tests need Chromium: install Debian's package when we may (root, apt-get)."""
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        return
    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("apt-get"):
        session.log("no Chromium and no root apt-get: the browser tests will skip")
        return
    session.log("installing Chromium (apt-get install chromium) for the browser tests")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    try:
        session.run("apt-get", "update", "-qq", external=True, env=env, silent=True)
        session.run(
            "apt-get", "install", "-y", "-qq", "chromium", external=True, env=env, silent=True
        )
    except nox.command.CommandFailed:
        session.log("apt-get could not install Chromium: the browser tests will skip")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite (two workers; pass pytest options after --)."""
    _install(session, "[test]")
    _browser(session)
    session.run("python", "-m", "pytest", "-n", "2", "-q", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(*CONSTRAINTS, "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Build the demo release of a tiny model and publish it to a local Hub."""
    _install(session)
    session.run("hubbot", "demo", *session.posargs)


@nox.session(python=PYTHON)
def validate(session: nox.Session) -> None:
    """Validate every manifest."""
    _install(session)
    session.run("hubbot", "validate", *(session.posargs or _manifests(session)))


@nox.session(python=PYTHON)
def plan(session: nox.Session) -> None:
    """Plan a manifest against the Hub: nox -s plan -- MANIFEST [--json]."""
    _install(session)
    session.run("hubbot", "plan", *session.posargs)


@nox.session(python=PYTHON, name="eval")
def evaluate(session: nox.Session) -> None:
    """Measure every variant against the base model, saving the figures for --quality.

    nox -s eval -- MANIFEST --save quality.json [--device cuda]
    """
    _install(session)
    session.run("hubbot", "eval", *session.posargs)


@nox.session(python=PYTHON)
def matrix(session: nox.Session) -> None:
    """GitHub Actions matrix of the variants that need work.

    nox -s matrix -- MANIFEST [--group domain|N|domain:N] [--chunks K] [--github-output]
    """
    _install(session)
    session.run("hubbot", "matrix", *session.posargs)


@nox.session(python=PYTHON)
def publish(session: nox.Session) -> None:
    """Build and publish: nox -s publish -- MANIFEST [--variant ID[,ID...]].

    A grouped matrix job passes its variants comma-separated: the base is fetched once
    and the variants are built and published one after another.
    """
    _install(session)
    session.run("hubbot", "publish", *session.posargs)


@nox.session(python=PYTHON)
def cards(session: nox.Session) -> None:
    """Re-render every published card: nox -s cards -- MANIFEST [--quality F]."""
    _install(session)
    session.run("hubbot", "cards", "--regen", *session.posargs)


def _manifests(session: nox.Session) -> list[str]:
    from pathlib import Path

    return sorted(str(p) for p in Path("manifests").glob("*.yaml"))
