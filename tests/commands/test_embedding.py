"""Run in-process (a notebook, a test, a script calling ``tuning.cli.main``), a command leaves the
host's logging and streams as it found them.

Hydra configures logging for each run with ``logging.config.dictConfig``, which closes every
handler alive in the process and puts its own on the root logger. Left alone, that closed the
host's handlers (absl's, created when TensorFlow is imported, closes its stream then: pytest's
capture file, under ``pytest -m "not slow"`` without ``-s``) and left a console handler bound to
a stream the host later closes.
"""

from __future__ import annotations

import io
import logging
import sys

import numpy as np
import pytest
from conftest import cli

# Refused inside the Hydra job (the data is read there), after Hydra set up its logging.
SWEEP = ["sweep", "data=csv", "data.path=plants.csv", "data.target=species", "tracking=none"]


class ClosesItsStream(logging.StreamHandler):
    """Like absl's handler or a FileHandler: closing it closes the stream it writes to."""

    def close(self) -> None:
        super().close()
        self.stream.close()


@pytest.fixture
def refused_in_hydra(in_tmp):
    """A CSV whose infinity is refused once Hydra's job has started: call it to run the sweep."""
    from tuning.data.plants import load_plants

    frame = load_plants(60, seed=0)
    frame.loc[4, "height"] = np.inf
    frame.to_csv(in_tmp / "plants.csv", index=False)
    return lambda: cli(SWEEP)


def test_an_in_process_command_leaves_the_hosts_handlers_open_and_in_place(refused_in_hydra, capsys):
    root = logging.getLogger()
    host_logger = logging.getLogger("embedding_host")
    host_stream = io.StringIO()
    host_handler = ClosesItsStream(host_stream)
    attached = ClosesItsStream(io.StringIO())
    unattached = ClosesItsStream(io.StringIO())  # like absl's: alive, on no logger
    host_logger.addHandler(attached)
    host_logger.disabled = True
    root.addHandler(host_handler)
    root_before, level_before = root.handlers[:], root.level
    streams = sys.stdout, sys.stderr
    try:
        assert refused_in_hydra() == 2
        assert capsys.readouterr().err.startswith("error: data.path: ")
        for handler in (host_handler, attached, unattached):
            assert not handler.stream.closed
        assert root.handlers == root_before  # no Hydra console handler left bound to this test's stdout
        assert root.level == level_before
        assert host_logger.handlers == [attached] and host_logger.disabled
        assert (sys.stdout, sys.stderr) == streams
        root.warning("still here")
        assert host_stream.getvalue() == "still here\n"
    finally:
        root.removeHandler(host_handler)
        host_logger.removeHandler(attached)
        host_logger.disabled = False


def test_tensorflows_absl_handler_keeps_the_stream_it_was_created_with(refused_in_hydra, capsys, monkeypatch):
    """The crash behind pytest's "lost sys.stderr": absl's handler holds the stderr of the moment
    TensorFlow was imported and closes it when closed, unless it is the current sys.stderr."""
    absl_logging = pytest.importorskip("absl.logging")
    earlier_stderr = io.StringIO()  # sys.stderr when TensorFlow was imported; now it is capsys'
    monkeypatch.setattr(absl_logging.get_absl_handler().python_handler, "stream", earlier_stderr)
    assert refused_in_hydra() == 2
    assert capsys.readouterr().err.startswith("error: data.path: ")
    assert not earlier_stderr.closed
