"""Whether the claims' spaCy pipeline (``CLAIMWIRE_SPACY_MODEL``) can be used.

A model that cannot be loaded is a fault of the configuration, not of an article: the
CLI refuses to start the service, a worker says so at start, and the claims step raises
:class:`ModelUnavailable`, which the tasks retry like a database outage (never counted,
never quarantined). This module imports spaCy only when it loads the model, so that
every process can import the error class cheaply.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from worker.core.settings import Settings

log = structlog.get_logger("claimwire.claims")


class ModelUnavailable(RuntimeError):
    """The spaCy pipeline named by ``CLAIMWIRE_SPACY_MODEL`` cannot be loaded: a fault of
    the configuration, not of the article. Retried like a database outage (never
    counted, never quarantined); the articles wait in their pending state until the
    setting is fixed."""


def model_problem(model_name: str, *, load: bool = True) -> str | None:
    """Why the claims pipeline ``model_name`` cannot be used, as one line naming the
    setting, or None when it can. ``load=False`` only checks that spaCy can find it (an
    installed package, a data directory, ``blank:``) without loading it, for a process
    that will not parse itself (a prefork worker's parent)."""
    if load:
        from worker.claims import load_nlp

        try:
            load_nlp(model_name)
        except Exception as exc:  # noqa: BLE001 (OSError E050, ImportError, no parser...)
            lines = str(exc).strip().splitlines()
            why = (lines[0][:500] if lines else type(exc).__name__).rstrip(".")
            return f"CLAIMWIRE_SPACY_MODEL={model_name!r} cannot be loaded: {why}"
        return None
    if model_name.startswith("blank:") or _installed(model_name) or Path(model_name).exists():
        return None
    return (
        f"CLAIMWIRE_SPACY_MODEL={model_name!r} cannot be loaded: no installed spaCy package "
        "or data directory of that name"
    )


def _installed(name: str) -> bool:
    """Whether a distribution of that name is installed: the test of
    ``spacy.util.is_package`` (``importlib.metadata.distribution``), without importing
    spaCy, which cost the `claimwire run` process 0.65 s of CPU at its start for a
    pipeline only its CPU processes load (issue 16)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution(name)
    except (PackageNotFoundError, ValueError):
        return False
    return True


def require_model(settings: Settings) -> None:
    """Raise :class:`ModelUnavailable` when claims are on and their spaCy pipeline cannot
    be loaded (loaded once per process, so a cheap call after the first). Called at the
    start of the claims step, so that a wrong model name leaves articles pending instead
    of counting attempts against every one of them."""
    if not settings.extract_claims:
        return
    problem = model_problem(settings.spacy_model)
    if problem is not None:
        log.error("claims_model_unavailable", problem=problem)
        raise ModelUnavailable(problem)
