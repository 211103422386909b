"""``check-plugin`` names the underlying error when Airflow's own configuration fails behind a wrapper."""

from __future__ import annotations

import logging.config
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from coordinator.airflow_plugin import check
from coordinator.errors import PluginCheckError


def _configure_logging_like_airflow() -> None:
    """What Airflow's settings do at import: a dictConfig whose formatter's module is not installed."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"airflow": {"()": "coordinator_missing_asyncpg_stand_in.Formatter"}},
        }
    )


class _BrokenEntryPoint(EntryPoint):
    """An entry point whose import fails the way a missing ``[postgres]`` extra fails Airflow's logging setup."""

    def load(self) -> Any:
        _configure_logging_like_airflow()
        raise AssertionError("dictConfig should have raised")  # pragma: no cover


def test_import_failure_names_the_missing_module_behind_the_formatter_error() -> None:
    """The wrapper ``ValueError: Unable to configure formatter 'airflow'`` is shown with the ModuleNotFoundError that
    caused it, and what to install."""
    ep = _BrokenEntryPoint("etcd_coordinator", "coordinator.airflow_plugin.plugin:CoordinatorPlugin", "airflow.plugins")
    with pytest.raises(PluginCheckError) as raised:
        check._load_listener(ep)
    message = str(raised.value)
    assert "ValueError: Unable to configure formatter 'airflow'" in message
    assert "caused by ModuleNotFoundError: No module named 'coordinator_missing_asyncpg_stand_in'" in message
    assert "install coordinator_missing_asyncpg_stand_in where Airflow runs" in message


def test_a_failure_without_a_cause_is_said_as_it_is() -> None:
    """An exception that nothing caused is ``Type: message`` alone, with no "caused by"."""
    assert check.failure(RuntimeError("boom")) == "RuntimeError: boom"


def test_the_cause_chain_is_followed_to_its_end() -> None:
    """``underlying`` follows ``__cause__`` and ``__context__`` to the last exception of the chain."""
    try:
        try:
            try:
                raise ModuleNotFoundError("No module named 'asyncpg'", name="asyncpg")
            except ModuleNotFoundError as first:
                raise ImportError("cannot import the dialect") from first
        except ImportError:
            raise ValueError("Unable to configure formatter 'airflow'")  # noqa: B904 (a __context__, as in Airflow)
    except ValueError as exc:
        cause = check.underlying(exc)
        assert isinstance(cause, ModuleNotFoundError) and cause.name == "asyncpg"
        assert check.failure(exc).endswith(
            "caused by ModuleNotFoundError: No module named 'asyncpg' (install asyncpg where Airflow runs, or the "
            "Airflow extra that brings it)"
        )
