"""Settings a nanny resolves for its worker process: read once, from the environment."""

from __future__ import annotations

import json
import os

import dask.config
import pytest

from shoal import inherited_settings, settings
from shoal.nanny import Nanny


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inherited_settings, "_read", False)
    monkeypatch.setattr(inherited_settings, "_inherited", None)


def test_read_once_and_removed_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    passed = {"worker": {"heartbeat_interval": 0.25}, "event-loop.uvloop": False}
    monkeypatch.setenv(inherited_settings.ENV, json.dumps(passed))
    assert inherited_settings.inherited() == passed
    assert inherited_settings.ENV not in os.environ  # processes it starts resolve anew
    assert inherited_settings.inherited() == passed


def test_none_without_a_nanny(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(inherited_settings.ENV, raising=False)
    assert inherited_settings.inherited() is None


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"worker": 3}'])
def test_a_malformed_variable_is_an_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv(inherited_settings.ENV, text)
    with pytest.raises(ValueError, match=inherited_settings.ENV):
        inherited_settings.inherited()


def test_a_start_setting_is_the_passed_one_else_resolved_here(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(inherited_settings.ENV, raising=False)
    here = settings.worker_start_settings()
    assert inherited_settings.start_setting(inherited_settings.WORKER) == here["worker"]
    assert (
        inherited_settings.start_setting(inherited_settings.UVLOOP)
        == here[inherited_settings.UVLOOP]
    )
    monkeypatch.setattr(inherited_settings, "_read", False)
    monkeypatch.setenv(inherited_settings.ENV, json.dumps({"worker": {"x": 1}}))
    assert inherited_settings.start_setting(inherited_settings.WORKER) == {"x": 1}
    assert inherited_settings.start_setting(inherited_settings.UVLOOP) is None


def test_configuration_variables_are_recognised() -> None:
    assert inherited_settings.configures({"SHOAL_WORKER__HEARTBEAT_INTERVAL": "1s"})
    assert inherited_settings.configures({"DASK_DISTRIBUTED__WORKER__MEMORY__TARGET": "0.5"})
    assert not inherited_settings.configures({"SHOAL_TOKEN": "x", "OMP_NUM_THREADS": "1"})


def test_the_nanny_passes_what_dask_config_says_here() -> None:
    """``dask.config.set`` in the nanny's process reaches its worker (as in dask, whose
    nanny ships its config to the worker)."""
    with dask.config.set({"shoal.worker.heartbeat-interval": "250ms"}):
        environ = Nanny("tcp://127.0.0.1:9")._environ()
    passed = json.loads(environ[inherited_settings.ENV])
    shipped = passed.pop(inherited_settings.DASK_CONFIG)
    here = settings.worker_start_settings()
    del here[inherited_settings.DASK_CONFIG]
    assert passed == {**here, "worker": {**settings.worker_settings(), "heartbeat_interval": 0.25}}
    assert shipped["shoal"]["worker"]["heartbeat-interval"] == "250ms"


def test_a_nanny_giving_configuration_variables_lets_the_worker_resolve() -> None:
    nanny = Nanny("tcp://127.0.0.1:9", env={"SHOAL_WORKER__HEARTBEAT_INTERVAL": "1s"})
    environ = nanny._environ()
    assert inherited_settings.ENV not in environ
    assert environ["SHOAL_WORKER__HEARTBEAT_INTERVAL"] == "1s"


def test_json_ready_leaves_out_what_json_cannot_carry() -> None:
    marker = object()
    config = {"a": {"b": 1, "c": marker, "d": [1, marker, "x"]}, "e": None, 3: "int key"}
    assert inherited_settings.json_ready(config) == {"a": {"b": 1, "d": [1, "x"]}, "e": None}


def test_the_nanny_ships_its_dask_config_and_the_worker_applies_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with dask.config.set({"inherited-test.chunk": "7MiB", "inherited-test.obj": object()}):
        passed = settings.worker_start_settings()
    shipped = passed[inherited_settings.DASK_CONFIG]
    assert shipped["inherited-test"] == {"chunk": "7MiB"}  # the object stays behind
    assert dask.config.get("inherited-test", None) is None
    monkeypatch.setenv(inherited_settings.ENV, json.dumps(passed))
    monkeypatch.setattr(inherited_settings, "_read", False)
    saved = dask.config.config.copy()
    try:
        assert inherited_settings.apply_dask_config()
        assert dask.config.get("inherited-test.chunk") == "7MiB"
    finally:
        dask.config.config.clear()
        dask.config.config.update(saved)


def test_nothing_to_apply_without_a_nanny(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(inherited_settings.ENV, raising=False)
    monkeypatch.setattr(inherited_settings, "_read", False)
    assert not inherited_settings.apply_dask_config()


def test_a_config_too_big_for_the_environment_stays_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with dask.config.set({"inherited-test.big": "x" * settings.MAX_SHIPPED_CONFIG}):
        passed = settings.worker_start_settings()
    assert passed[inherited_settings.DASK_CONFIG] == {}
    assert "worker processes read their own" in caplog.text
