"""The one ``shoal worker`` command line builder of the deployments."""

from __future__ import annotations

from shoal.cli import main
from shoal.deploy.commands import worker_argv


def test_every_option_is_spelled_once_and_in_place() -> None:
    argv = worker_argv(
        ["/py"], "tls://s:1", name="w-0", no_auth=True, host="h", nthreads=2,
        memory_limit=100, shoal_flags=["--environ-from-stdin"], extra=["--nworkers", "3"],
    )  # fmt: skip
    assert argv == [
        "/py", "-m", "shoal", "--environ-from-stdin", "worker", "tls://s:1", "--nanny",
        "--name", "w-0", "--host", "h", "--nthreads", "2", "--memory-limit", "100",
        "--no-auth", "--nworkers", "3",
    ]  # fmt: skip


def test_left_out_options_are_not_on_the_line() -> None:
    argv = worker_argv(["/py"], "tcp://s:1", name="w", no_auth=False)
    assert argv == ["/py", "-m", "shoal", "worker", "tcp://s:1", "--nanny", "--name", "w"]


def test_the_cli_accepts_every_flag_the_builder_writes() -> None:
    worker = main.commands["worker"]  # type: ignore[attr-defined]
    known = {opt for param in worker.params for opt in getattr(param, "opts", [])}
    argv = worker_argv(["/py"], "tcp://s:1", name="w", no_auth=True, host="h", nthreads=1,
                       memory_limit="1GiB")  # fmt: skip
    flags = [a for a in argv[argv.index("tcp://s:1") + 1 :] if a.startswith("--")]
    assert flags and set(flags) <= known, set(flags) - known
