"""Use cases: one unit of work each, history recorded, one commit. Sync; run via `Store.run`."""
