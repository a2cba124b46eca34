"""The worker: a pure state machine (state.py) and its IO shell (server.py)."""
