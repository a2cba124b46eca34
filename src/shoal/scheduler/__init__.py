"""The scheduler: a pure state machine (state.py, policy.py) and its IO shell (server.py)."""
