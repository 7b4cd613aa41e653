"""Aggregates as pure functions: `decide(state, command) -> events` and `evolve(state, event)`."""
