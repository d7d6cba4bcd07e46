"""Broadcast: WebSocket and long-poll fan-out of binary deltas to fans."""
