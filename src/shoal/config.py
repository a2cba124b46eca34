"""Configuration as frozen dataclasses: read once at the edges (CLI, constructors)."""

from __future__ import annotations

from dataclasses import dataclass, field

from shoal.protocol.frames import FrameLimits


@dataclass(frozen=True, slots=True)
class TCPKeepalive:
    """How the kernel notices a dead peer on an idle or stuck TCP connection."""

    #: seconds a connection is idle before the first keepalive probe
    idle: float = 10.0
    #: seconds between unanswered probes
    interval: float = 5.0
    #: unanswered probes before the connection is dropped
    count: int = 3
    #: seconds sent data may stay unacknowledged before the connection is dropped (Linux
    #: ``TCP_USER_TIMEOUT``; 0: the kernel's default of about 15 minutes)
    user_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class CommConfig:
    """How connections behave."""

    #: seconds to establish a connection (TCP connect plus handshake)
    connect_timeout: float = 10.0
    #: seconds a freshly accepted peer has to finish the handshake
    handshake_timeout: float = 5.0
    #: hard limits on frame sets from an authenticated peer
    limits: FrameLimits = field(default_factory=FrameLimits)
    #: seconds a BatchedStream waits to coalesce messages before writing them
    batch_interval: float = 0.0005
    #: most open connections a ConnectionPool keeps
    pool_limit: int = 512
    #: seconds an rpc call waits for its reply (None: forever); calls may pass their own
    call_timeout: float | None = 300.0
    #: seconds one ``get_data`` fetch from a peer may take before it counts as failed
    fetch_timeout: float = 120.0
    #: TCP keepalive on every connection, both directions
    keepalive: TCPKeepalive = field(default_factory=TCPKeepalive)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What a worker is and how it behaves; the seed's parameters, with their meaning."""

    #: number of threads running tasks
    nthreads: int = 1
    #: alias shown in the scheduler and dashboard (defaults to the address)
    name: str | None = None
    #: bytes this worker should use; 0 for no limit ("auto" etc. are parsed before this)
    memory_limit: int = 0
    #: abstract resources like {"GPU": 2}
    resources: dict[str, float] = field(default_factory=dict)
    #: where spill files and other local resources go (a fresh temp dir when None)
    local_directory: str | None = None
    #: address of the nanny supervising this worker, if any
    nanny: str | None = None
    #: seconds after which the worker retires itself (None: never)
    lifetime: float | None = None
    #: the lifetime is drawn uniformly from lifetime +/- lifetime_stagger
    lifetime_stagger: float = 0.0
    #: start a fresh worker after the lifetime ends (through the nanny)
    lifetime_restart: bool = False
    #: most concurrent outgoing requests for data
    total_out_connections: int = 4
    #: most concurrent incoming requests for data
    total_in_connections: int = 10
    #: most bytes in flight from peers at once
    total_comm_nbytes: int = 64 * 2**20
    #: peers on this host hand large buffers through shared memory (comm/shm.py)
    shared_memory: bool = True
    #: fraction of memory_limit to keep managed memory beneath (spill past it)
    memory_target_fraction: float | None = 0.6
    #: fraction of process memory at which the monitor spills
    memory_spill_fraction: float | None = 0.7
    #: fraction of process memory at which the worker stops starting tasks
    memory_pause_fraction: float | None = 0.8
    #: seconds a task waits for the spill writer to catch up before it runs anyway (a
    #: stuck disk must not stop the worker; the monitor's pause still applies)
    spill_writes_wait: float = 10.0
    #: seconds between heartbeats to the scheduler
    heartbeat_interval: float = 0.5
    #: seconds to keep trying to reach a lost (or not yet started) scheduler before
    #: exiting with a non-zero code; None: for ever (dask's default)
    death_timeout: float | None = None
    #: scheduler file to read the scheduler's address from again before each try
    scheduler_file: str | None = None
    #: run WorkerState.validate() after every event (tests)
    validate: bool = False


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """How the scheduler behaves."""

    #: seconds without a heartbeat before a worker is removed
    worker_ttl: float = 60.0
    #: deaths while running a task before it is erred with KilledWorker
    allowed_failures: int = 3
    #: seconds results that workers report holding (after a scheduler restart) wait for a
    #: client to declare them before they are freed
    unclaimed_grace: float = 300.0
    #: run code sent by clients (run_on_scheduler, SchedulerPlugin): off, it is unsafe
    allow_client_code: bool = False
    #: modules imported at start; their ``shoal_setup(scheduler)`` is called
    preload: tuple[str, ...] = ()
    #: the round trip that admission control keeps workers busy across (seconds)
    latency: float = 0.005
    #: results up to this many bytes keep a second copy on another worker while needed,
    #: so a worker loss does not make their released ancestors be recomputed (0: never)
    spare_copy_bytes: int = 0
    #: a task whose one missing input is being computed goes to that worker ahead of it,
    #: up to this many in a row (0: never; see ``scheduler.state_speculation``)
    speculation_depth: int = 1
    #: run SchedulerState.validate() after every event (tests)
    validate: bool = False
