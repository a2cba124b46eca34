"""shoal.protocol.function_pickles: a ``__main__`` function's pickle, reused only while
everything it captured is the same object."""

from __future__ import annotations

import pickle
import sys
from typing import Any

import cloudpickle
import pytest

from shoal.errors import SerializationError
from shoal.protocol import function_pickles
from shoal.protocol.serialize import deserialize, dumps_function, serialize

SCRIPT = """
import math

N = 5
ITEMS = [1, 2]

def add_n(x):
    return x + N

def uses_items(x):
    return x + sum(ITEMS)

def calls_add_n(x):
    return add_n(x) * 2

def with_default(x, step=(1, 2)):
    return x + step[0] + math.floor(1.5)

def countdown(n):
    return 0 if n == 0 else countdown(n - 1)

def make_adder(k):
    def adder(x):
        return x + k
    return adder

class Box:
    pass
"""


@pytest.fixture
def script() -> dict[str, Any]:
    """A namespace as if from a script run as ``__main__``: its functions pickle by value."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(SCRIPT, "<script>", "exec"), namespace)
    return namespace


def run(blob: bytes, *args: Any) -> Any:
    return pickle.loads(blob)(*args)


@pytest.mark.parametrize("name", ["add_n", "calls_add_n", "with_default", "countdown"])
def test_a_function_whose_captures_cannot_change_unseen_is_pickled_once(
    script: dict[str, Any], name: str
) -> None:
    first = dumps_function(script[name])
    assert dumps_function(script[name]) is first  # the remembered bytes, not a new pickle


def test_rebinding_a_global_is_seen_at_the_next_pickle(script: dict[str, Any]) -> None:
    assert run(dumps_function(script["add_n"]), 1) == 6
    script["N"] = 10
    assert run(dumps_function(script["add_n"]), 1) == 11
    assert run(dumps_function(script["calls_add_n"]), 1) == 22  # through another function


def test_redefining_a_called_function_is_seen(script: dict[str, Any]) -> None:
    assert run(dumps_function(script["calls_add_n"]), 1) == 12
    exec("def add_n(x):\n    return x - N", script)
    assert run(dumps_function(script["calls_add_n"]), 1) == -8


def test_a_mutable_global_is_pickled_afresh_every_time(script: dict[str, Any]) -> None:
    first = dumps_function(script["uses_items"])
    assert run(first, 0) == 3
    script["ITEMS"].append(10)
    second = dumps_function(script["uses_items"])
    assert second is not first
    assert run(second, 0) == 13
    assert function_pickles.remembered(script["uses_items"]) is None


def test_closures_are_remembered_per_function_object(script: dict[str, Any]) -> None:
    add_one, add_two = script["make_adder"](1), script["make_adder"](2)
    assert run(dumps_function(add_one), 1) == 2
    assert run(dumps_function(add_two), 1) == 3
    assert dumps_function(add_one) is dumps_function(add_one)


def test_a_closure_over_a_mutable_value_is_not_remembered(script: dict[str, Any]) -> None:
    adder = script["make_adder"]([1])
    function_pickles.remember(adder, dumps_function(adder))
    assert function_pickles.remembered(adder) is None


def test_a_mutable_default_is_not_remembered(script: dict[str, Any]) -> None:
    exec("def appends(x, into=[]):\n    into.append(x)\n    return into", script)
    dumps_function(script["appends"])
    assert function_pickles.remembered(script["appends"]) is None


def test_a_changed_default_is_seen(script: dict[str, Any]) -> None:
    func = script["with_default"]
    assert run(dumps_function(func), 0) == 2
    func.__defaults__ = ((5, 0),)
    assert run(dumps_function(func), 0) == 6


def test_a_function_with_attributes_is_not_remembered(script: dict[str, Any]) -> None:
    func = script["add_n"]
    func.tag = "x"
    dumps_function(func)
    assert function_pickles.remembered(func) is None


def test_only_plain_functions_are_remembered(script: dict[str, Any]) -> None:
    function_pickles.remember(script["Box"], b"blob")  # a class: its dict may change
    assert function_pickles.remembered(script["Box"]) is None


def test_the_table_is_bounded(script: dict[str, Any]) -> None:
    adders = [script["make_adder"](k) for k in range(function_pickles.MAX_FUNCTIONS + 1)]
    for adder in adders:
        function_pickles.remember(adder, b"blob")
    assert len(function_pickles._pickles) <= function_pickles.MAX_FUNCTIONS
    assert function_pickles.remembered(adders[-1]) == b"blob"


def test_a_spec_carrying_a_main_function_still_sends_main_arguments_by_value(
    script: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the function's own pickle names __main__; an argument that plain pickle would refer
    # to by name in the sender's __main__ must still travel by value
    blob = dumps_function(script["add_n"])
    main = sys.modules["__main__"]
    monkeypatch.setattr(main, "Box", script["Box"], raising=False)
    spec: tuple[Any, ...] = (blob, (script["Box"](),), {}, False)
    assert b"__main__" in pickle.dumps(spec[1], protocol=5)
    value = serialize(spec, carries=blob)
    monkeypatch.undo()
    assert not hasattr(main, "Box")
    func_blob, (box,), _, _ = deserialize(value)
    assert type(box).__name__ == "Box"
    assert run(func_blob, 1) == 6


def test_a_spec_whose_only_main_is_its_function_is_pickled_plainly(
    script: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    blob = dumps_function(script["add_n"])

    def no_cloudpickle(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("the spec went through cloudpickle")

    monkeypatch.setattr(cloudpickle, "dumps", no_cloudpickle)
    value = serialize((blob, (1, 2), {}, False), carries=blob)
    assert deserialize(value) == (blob, (1, 2), {}, False)
    with pytest.raises(SerializationError, match="went through cloudpickle"):
        serialize((blob, (1, 2), {}, False))  # without ``carries``, as before


def test_a_graph_node_calling_a_main_function_is_not_cloudpickled_whole(
    script: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dask._task_spec import Task

    node = Task("k", script["add_n"], 1)
    whole: list[object] = []
    real_dumps = cloudpickle.dumps

    def watched(obj: object, *args: Any, **kwargs: Any) -> bytes:
        if not callable(obj) or isinstance(obj, Task):
            whole.append(obj)
        return real_dumps(obj, *args, **kwargs)

    monkeypatch.setattr(cloudpickle, "dumps", watched)
    value = serialize(node, task=True)
    assert whole == []  # only the function itself went through cloudpickle
    monkeypatch.undo()
    assert deserialize(value)() == 6


def test_lambdas_and_closures_inside_data_go_by_value(script: dict[str, Any]) -> None:
    value = serialize({"f": lambda x: x * 3, "g": script["make_adder"](4)})
    restored = deserialize(value)
    assert (restored["f"](2), restored["g"](2)) == (6, 6)


def test_a_main_class_instance_next_to_a_main_function_still_travels_by_value(
    script: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    main = sys.modules["__main__"]
    monkeypatch.setattr(main, "Box", script["Box"], raising=False)
    value = serialize((script["add_n"], script["Box"]()))
    monkeypatch.undo()
    func, box = deserialize(value)
    assert func(1) == 6 and type(box).__name__ == "Box"


def test_a_remembered_recursive_function_does_not_keep_itself_alive(
    script: dict[str, Any],
) -> None:
    import gc
    import weakref

    dumps_function(script["countdown"])
    assert function_pickles.remembered(script["countdown"]) is not None
    alive = weakref.ref(script["countdown"])
    del script["countdown"]
    gc.collect()
    assert alive() is None  # the table held it weakly and nothing else did


def test_rebinding_a_recursive_function_s_own_name_is_seen(script: dict[str, Any]) -> None:
    countdown = script["countdown"]
    assert run(dumps_function(countdown), 3) == 0
    script["countdown"] = lambda n: -1
    assert run(dumps_function(countdown), 3) == -1
