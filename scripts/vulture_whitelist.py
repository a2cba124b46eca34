"""Names vulture reports as unused that are used: read by vulture only, never run.

Each is used where vulture cannot see it: a dask keyword that shoal accepts and
documents as having no effect (``shoal.client.signatures``), a hook Python or IPython
calls, a name reached through ``getattr``, or a decorated entry point.
"""

# dask keywords accepted with no effect (shoal.client.signatures, shoal.client.admin)
bokeh_resources  # Client.get_task_stream
branching_factor  # Client.replicate
allow_global  # Client.current
write_from_scheduler  # Client.dump_cluster_state
storage_options  # Client.dump_cluster_state, performance_report
fifo_timeout  # submit, map, compute, persist
batch_size  # map
traverse  # compute
memo  # ShoalDaskScheduler.__deepcopy__(memo)
exc_info  # Server.__aexit__(*exc_info)

# called by Python, IPython or a registry, not by name
__getattr__  # lazy module attributes: shoal, shoal.deploy
_close_clients_at_exit  # @atexit.register
_repr_html_  # Jupyter's rich display of a Future
teardown  # plugin hooks a worker or nanny calls
reducer_override  # the C pickler looks it up on shoal.protocol.serialize._Pickler
demo  # the ``shoal demo`` click command

# read through getattr(security, f"tls_{role}_key") (Security.cert_and_key)
tls_scheduler_key
tls_worker_key
tls_client_key
