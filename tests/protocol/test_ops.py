"""The wire schema: every op round-trips, every op has an adapter, the doc is current."""

from __future__ import annotations

import importlib.util
import typing
from pathlib import Path
from types import ModuleType

import msgspec
import pytest

from shoal.client import wire as client_wire
from shoal.client.core import ClientCore
from shoal.errors import ProtocolError
from shoal.protocol import messages, ops
from shoal.protocol.serialize import Serialized, deserialize, serialize
from shoal.scheduler import events as sev
from shoal.scheduler import instructions as sins
from shoal.scheduler import wire as scheduler_wire
from shoal.worker import events as wev
from shoal.worker import instructions as wins
from shoal.worker import wire as worker_wire
from tests.conftest import received

ROOT = Path(__file__).resolve().parents[2]
KEY: object = ("x-abc", 0, 1)
#: a sample value for each field type the schema uses (a new type must be added here)
SAMPLES: dict[str, object] = {
    "str | tuple[object, ...]": KEY,
    "int": 7,
    "float": 1.5,
    "str": "text",
    "bool": True,
    "str | None": "ready",
    "object": serialize(ValueError("boom")),
    "tuple[float, ...]": (0.0, 3.0, -1.0),
    "tuple[str | tuple[object, ...], ...]": ("a", KEY),
    "Mapping[str | tuple[object, ...], tuple[str, ...]]": {KEY: ("tcp://127.0.0.1:1",)},
    "Mapping[str | tuple[object, ...], int]": {"a": 3, KEY: 5},
    "Mapping[str, float]": {"GPU": 1.0},
    "Mapping[str, object]": {"retries": 2},
    "Mapping[str, Any]": {"memory": 10, "executing": 1},
    "Sequence[str]": ("tcp://127.0.0.1:1", "tcp://127.0.0.1:2"),
    "Sequence[str | tuple[object, ...]]": ("a", KEY),
    "Sequence[Any]": (1.5, {"note": "hi"}),
    "Sequence[tuple[str | tuple[object, ...], object, tuple[str | tuple[object, ...], ...], "
    "tuple[float, ...], str | None]]": (
        ("a", serialize(len), (), (0.0, 1.0), "token-a"),
        (KEY, None, ("a",), (-1.0,), None),
    ),
    "Mapping[str | tuple[object, ...], Mapping[str, Any]]": {KEY: {"retries": 2}},
}
ALL_OPS = [cls for stream in ops.STREAMS for cls in ops.OPS[stream].values()]


def _doc_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("protocol_doc", ROOT / "scripts/protocol_doc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _type_text(cls: type[ops.Op], name: str) -> str:
    text = str(typing.get_type_hints(cls)[name])
    for prefix in ("typing.", "collections.abc."):
        text = text.replace(prefix, "")
    return text.replace("<class '", "").replace("'>", "")


def sample(cls: type[ops.Op]) -> ops.Op:
    values = {name: SAMPLES[_type_text(cls, name)] for name in cls.__struct_fields__}
    return cls(**values)


def _same(a: object, b: object) -> bool:
    if isinstance(a, Serialized) and isinstance(b, Serialized):
        return bytes(a.header) == bytes(b.header) and [bytes(x) for x in a.buffers] == [
            bytes(x) for x in b.buffers
        ]
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):  # msgpack: lists -> tuples
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize("cls", ALL_OPS, ids=lambda c: f"{c.stream}:{c.op}")
def test_every_op_round_trips_through_the_real_encoding(cls: type[ops.Op]) -> None:
    op = sample(cls)
    back = ops.from_msg(cls.stream, messages.loads(received(messages.dumps(ops.to_msg(op)))))
    assert type(back) is cls
    for name in cls.fields:
        assert _same(getattr(back, name), getattr(op, name)), name


@pytest.mark.parametrize("cls", ALL_OPS, ids=lambda c: f"{c.stream}:{c.op}")
def test_ops_are_frozen_and_slotted(cls: type[ops.Op]) -> None:
    op = sample(cls)
    assert not hasattr(op, "__dict__")
    if not cls.fields:  # nothing to change (and no slot to add: __dict__ is absent)
        return
    with pytest.raises(AttributeError, match="immutable"):
        setattr(op, cls.fields[0], "x")


def test_field_names_are_the_schema() -> None:
    """A renamed field changes the wire: this list and docs/protocol.md must change too."""
    fields = {cls.op: cls.fields for cls in ops.OPS[ops.SCHEDULER_TO_WORKER].values()}
    assert fields["compute-task"] == (
        "key", "run_id", "run_spec", "priority", "who_has", "nbytes", "resources",
        "annotations", "inline_result", "stimulus_id",
    )  # fmt: skip
    to_scheduler = {cls.op: cls.fields for cls in ops.OPS[ops.CLIENT_TO_SCHEDULER].values()}
    assert to_scheduler["update-graph"] == ("tasks", "restrictions", "wanted", "stimulus_id")
    to_client = {cls.op: cls.fields for cls in ops.OPS[ops.SCHEDULER_TO_CLIENT].values()}
    assert to_client["key-in-memory"] == ("key", "type_name", "who_has", "value")
    # renamed on the way into the schema: "stream" (print's stdout/stderr) is now "file"
    assert to_client["output"] == ("kind", "text", "file", "category")
    assert ops.to_msg(ops.FreeKeys(keys=("a",), stimulus_id="s")) == {
        "op": "free-keys",
        "keys": ("a",),
        "stimulus_id": "s",
    }


def test_every_op_has_an_adapter_or_is_the_shells() -> None:
    worker_side = set(worker_wire.EVENT_OF) | worker_wire.SHELL_OPS
    assert worker_side == set(ops.OPS[ops.SCHEDULER_TO_WORKER].values())
    scheduler_side = set(scheduler_wire.EVENT_OF) | scheduler_wire.SHELL_OPS
    assert scheduler_side == set(ops.OPS[ops.WORKER_TO_SCHEDULER].values())
    assert not set(worker_wire.EVENT_OF) & worker_wire.SHELL_OPS
    assert not set(scheduler_wire.EVENT_OF) & scheduler_wire.SHELL_OPS


def test_every_client_op_has_an_adapter_or_is_the_shells() -> None:
    from_clients = set(scheduler_wire.CLIENT_EVENT_OF) | scheduler_wire.CLIENT_SHELL_OPS
    assert from_clients == set(ops.OPS[ops.CLIENT_TO_SCHEDULER].values())
    assert not set(scheduler_wire.CLIENT_EVENT_OF) & scheduler_wire.CLIENT_SHELL_OPS
    made = {
        type(scheduler_wire.to_client_op(_instance(inst, stimulus_id="s", client="c")))  # type: ignore[arg-type]
        for inst in scheduler_wire.CLIENT_OP_OF
    }
    assert made | scheduler_wire.CLIENT_SHELL_SENT == set(ops.OPS[ops.SCHEDULER_TO_CLIENT].values())
    # the client handles every one of them (key-in-memory on its fast path)
    core = ClientCore(transport=None, client_id="c")  # type: ignore[arg-type]
    handled = set(core._handlers) | {ops.KeyInMemory}
    assert handled == set(ops.OPS[ops.SCHEDULER_TO_CLIENT].values())


def _subclasses(module: ModuleType, base: type) -> set[type]:
    """The subclasses of ``base`` that ``module`` defines (as bound in it: ``__subclasses__``
    would also list the pre-slots classes that ``dataclass(slots=True)`` replaces)."""
    return {c for c in vars(module).values() if isinstance(c, type) and issubclass(c, base)} - {
        base
    }


def test_every_message_instruction_has_an_op() -> None:
    assert set(worker_wire.OP_OF) == _subclasses(wins, wins.SendToScheduler)
    to_workers = {
        c
        for c in _subclasses(sins, sins.SchedulerInstruction)
        if "worker" in c.__struct_fields__  # type: ignore[attr-defined]
    }
    assert set(scheduler_wire.OP_OF) == to_workers
    to_clients = {
        c
        for c in _subclasses(sins, sins.SchedulerInstruction)
        if "client" in c.__struct_fields__  # type: ignore[attr-defined]
    }
    assert set(scheduler_wire.CLIENT_OP_OF) == to_clients


def _instance(cls: type, **given: object) -> object:
    values = {}
    for f in msgspec.structs.fields(cls):
        if f.name in given:
            values[f.name] = given[f.name]
        elif f.required:
            values[f.name] = SAMPLES.get(_type_text(cls, f.name), "x")
    return cls(**values)


@pytest.mark.parametrize("inst_type", list(worker_wire.OP_OF), ids=lambda c: c.__name__)
def test_worker_messages_reach_the_scheduler_whole(inst_type: type) -> None:
    """Instruction -> op -> wire -> op -> event keeps every field the two share."""
    inst = _instance(inst_type, stimulus_id="sid-1")
    op = worker_wire.to_op(inst)  # type: ignore[arg-type]
    frames = received(messages.dumps(ops.to_msg(op)))
    wire = ops.from_msg(ops.WORKER_TO_SCHEDULER, messages.loads(frames))
    event = scheduler_wire.to_event(wire, "tcp://w:1", 3, 9.0)
    assert (event.stimulus_id, event.now, event.worker, event.incarnation) == (  # type: ignore[attr-defined]
        "sid-1", 9.0, "tcp://w:1", 3,
    )  # fmt: skip
    for name in inst.__struct_fields__:  # type: ignore[attr-defined]
        if name in event.__struct_fields__:
            assert _same(getattr(event, name), getattr(inst, name)), name


@pytest.mark.parametrize("inst_type", list(scheduler_wire.OP_OF), ids=lambda c: c.__name__)
def test_scheduler_instructions_reach_the_worker_whole(inst_type: type) -> None:
    inst = _instance(inst_type, stimulus_id="sid-2", worker="tcp://w:1")
    op = scheduler_wire.to_op(inst)  # type: ignore[arg-type]
    frames = received(messages.dumps(ops.to_msg(op)))
    wire = ops.from_msg(ops.SCHEDULER_TO_WORKER, messages.loads(frames))
    if type(wire) in worker_wire.SHELL_OPS:
        assert wire == op
        return
    event = worker_wire.to_event(wire, 4.0)
    assert (event.stimulus_id, event.now) == ("sid-2", 4.0)
    renamed = {"resources": "resource_restrictions"}
    for name in inst.__struct_fields__:  # type: ignore[attr-defined]
        target = renamed.get(name, name)
        if target in event.__struct_fields__:
            assert _same(getattr(event, target), getattr(inst, name)), name


def test_malformed_messages_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match="unknown op"):
        ops.from_msg(ops.SCHEDULER_TO_WORKER, {"op": "no-such-op"})
    with pytest.raises(ProtocolError, match="free-keys"):
        ops.from_msg(ops.SCHEDULER_TO_WORKER, {"op": "free-keys"})
    extra = ops.from_msg(ops.SCHEDULER_TO_WORKER, {"op": "free-keys", "keys": (), "new": 1})
    assert extra == ops.FreeKeys(keys=())


def test_protocol_doc_is_generated_from_the_schema() -> None:
    script = _doc_script()
    assert (ROOT / "docs/protocol.md").read_text() == script.render(), (
        "docs/protocol.md is stale: run python scripts/protocol_doc.py"
    )
    for cls in ALL_OPS:
        assert f"`{cls.op}`" in script.render()


def _through_the_wire(op: ops.Op) -> ops.Op:
    return ops.from_msg(op.stream, messages.loads(received(messages.dumps(ops.to_msg(op)))))


@pytest.mark.parametrize("cls", list(scheduler_wire.CLIENT_EVENT_OF), ids=lambda c: c.op)
def test_client_ops_reach_the_scheduler_state_whole(cls: type[ops.Op]) -> None:
    op = sample(cls)
    event = scheduler_wire.client_event(_through_the_wire(op), "client-1", 5.0, "fresh-{}".format)
    assert (event.client, event.now, event.stimulus_id) == ("client-1", 5.0, "text")  # type: ignore[attr-defined]
    for name in cls.fields:
        if name in event.__struct_fields__ and name != "tasks":
            assert _same(getattr(event, name), getattr(op, name)), name


def test_a_client_op_without_stimulus_id_gets_a_fresh_one() -> None:
    event = scheduler_wire.client_event(
        _through_the_wire(ops.Retry(keys=["a"])), "c", 0.0, "fresh-{}".format
    )
    assert event.stimulus_id == "fresh-retry"


def test_update_graph_rows_become_new_tasks_with_their_restrictions() -> None:
    op = sample(ops.UpdateGraph)
    event = scheduler_wire.client_event(_through_the_wire(op), "c", 0.0, str)
    assert isinstance(event, sev.GraphSubmitted)
    plain, restricted = event.tasks
    assert (plain.key, plain.dependencies, plain.priority, plain.token) == (
        "a", (), (0.0, 1.0), "token-a",
    )  # fmt: skip
    assert _same(plain.run_spec, serialize(len)) and plain.retries == 0
    assert (restricted.key, restricted.run_spec, restricted.dependencies) == (KEY, None, ("a",))
    assert restricted.retries == 2


def test_the_layer_name_of_tuple_keys_is_held_once() -> None:
    rows = [(("-".join(["layer", "x" * 30]), i), None, (), (0,), None) for i in range(3)]
    assert len({id(row[0][0]) for row in rows}) == 3  # three copies, as msgpack makes them
    tasks = list(scheduler_wire.new_tasks(rows, {}))
    assert [t.key for t in tasks] == [row[0] for row in rows]
    assert len({id(t.key[0]) for t in tasks}) == 1  # type: ignore[index]
    [plain] = scheduler_wire.new_tasks([("plain", None, (), (0,), None)], {})
    assert plain.key == "plain"


@pytest.mark.parametrize("inst_type", list(scheduler_wire.CLIENT_OP_OF), ids=lambda c: c.__name__)
def test_scheduler_instructions_reach_the_client_whole(inst_type: type) -> None:
    inst = _instance(inst_type, stimulus_id="sid-3", client="c")
    op = _through_the_wire(scheduler_wire.to_client_op(inst))  # type: ignore[arg-type]
    assert op.stream == ops.SCHEDULER_TO_CLIENT
    for name in inst.__struct_fields__:  # type: ignore[attr-defined]
        if name in op.fields:
            assert _same(getattr(op, name), getattr(inst, name)), name


def test_key_in_memory_carries_the_holders() -> None:
    inst = sins.KeyInMemory(
        stimulus_id="s", client="c", key="k", type_name="int", who_has=("tcp://w:1",)
    )
    msg = ops.to_msg(scheduler_wire.to_client_op(inst))
    assert msg == {
        "op": "key-in-memory", "key": "k", "type_name": "int", "who_has": ("tcp://w:1",),
        "value": None,
    }  # fmt: skip
    # an older scheduler sends no holders: the client then asks who has it
    assert ops.from_msg(ops.SCHEDULER_TO_CLIENT, {"op": "key-in-memory", "key": "k"}) == (
        ops.KeyInMemory(key="k")
    )


def test_a_small_result_rides_task_finished_and_key_in_memory_through_the_wire() -> None:
    """compute-task's inline_result reaches the worker; the worker's copy reaches the
    scheduler's event, and from its instruction the client's op, as a ``Serialized``."""
    compute = sins.ComputeTask(
        stimulus_id="s", worker="w", key="k", run_id=1, run_spec=None, priority=(0,),
        who_has={}, nbytes={}, inline_result=True,
    )  # fmt: skip
    assigned = worker_wire.to_event(_through_the_wire(scheduler_wire.to_op(compute)), 0.0)
    assert isinstance(assigned, wev.TaskAssigned) and assigned.inline_result is True
    blob = serialize({"answer": 42})
    finished = wins.TaskFinishedMsg(
        stimulus_id="s", key="k", run_id=1, nbytes=8, type_name="dict", start=0, stop=1,
        value=blob,
    )  # fmt: skip
    event = scheduler_wire.to_event(_through_the_wire(worker_wire.to_op(finished)), "w", 1, 0.0)
    assert isinstance(event, sev.TaskFinished) and isinstance(event.value, Serialized)
    inst = sins.KeyInMemory(
        stimulus_id="s", client="c", key="k", type_name="dict", value=event.value
    )
    op = _through_the_wire(scheduler_wire.to_client_op(inst))
    assert isinstance(op, ops.KeyInMemory) and isinstance(op.value, Serialized)
    assert deserialize(op.value) == {"answer": 42}


def test_a_scheduler_made_exception_is_serialized_for_the_client() -> None:
    inst = sins.KeyErred(
        stimulus_id="s", client="c", key="k", exception=KeyError("gone"),
        traceback="not serialized", exception_text="KeyError: gone", traceback_text="",
    )  # fmt: skip
    op = scheduler_wire.to_client_op(inst)
    assert isinstance(op, ops.KeyErred)
    assert isinstance(op.exception, Serialized) and op.traceback is None


def test_the_one_update_graph_builder() -> None:
    rows: list[ops.TaskRow] = [("a", None, (), (0.0,), None), ("b", None, ("a",), (0.0,), None)]
    op = client_wire.update_graph(rows, ["b", "a", "b"], {"a": {"retries": 1}, "z": {}})
    assert ops.to_msg(op) == {
        "op": "update-graph",
        "tasks": rows,
        "restrictions": {"a": {"retries": 1}},  # only for keys it sends
        "wanted": ["b", "a"],  # each once, in order
        "stimulus_id": "",
    }


def test_client_stream_op_names_are_spelled_in_the_schema_only() -> None:
    """The client-stream op names (the distinctive ones, not shared with the worker
    streams) occur as string literals in ``shoal/protocol/ops.py`` alone: every other
    module uses the structs."""
    names = [
        cls.op
        for stream in (ops.CLIENT_TO_SCHEDULER, ops.SCHEDULER_TO_CLIENT)
        for cls in ops.OPS[stream].values()
        if "-" in cls.op and cls.op not in ops.OPS[ops.WORKER_TO_SCHEDULER]  # task-erred
    ]
    offenders = []
    for path in sorted((ROOT / "src/shoal").rglob("*.py")):
        text = path.read_text()
        for name in names:
            if f'"{name}"' in text and path.name != "ops.py":
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []
