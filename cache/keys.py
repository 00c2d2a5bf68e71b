"""Redis key names. Every key of one environment shares the hash tag {<env>} so the Lua scripts
touch one slot (Redis Cluster-safe); the change channel is one per deployment (prefix)."""

from __future__ import annotations

from dataclasses import dataclass

CONFIG = "c"
FLAG = "f"
SEPARATOR = "|"  # never in a key, a service name or an environment name


def config_field(service_name: str | None, key: str) -> str:
    return f"{service_name or ''}{SEPARATOR}{key}"


def version_field(kind: str, field: str) -> str:
    return f"{CONFIG if kind == 'config' else FLAG}{SEPARATOR}{field}"


@dataclass(frozen=True, slots=True)
class EnvKeys:
    epoch: str  # the read model's generation; missing = not built (or Redis lost its data)
    revision: str  # the last revision of the environment's change feed
    configs: str  # hash: "<service or ''>|<key>" -> item JSON
    flags: str  # hash: "<flag key>" -> item JSON
    versions: str  # hash: "c|<field>" / "f|<key>" -> version, kept after deletes (tombstones)
    feed: str  # stream of the last N change messages, for replay by cursor
    lock: str  # rebuild lock: the builder's fencing token, with a TTL the builder extends
    applied: str  # hash: shard -> the sequence number up to which all its changes are applied
    ahead: str  # set: "shard:number" applied above the shard's watermark (out of order)

    def staging(self, name: str, token: str) -> str:
        """Where one builder stages `name`: per builder, so a second one never touches it."""
        return f"{name}:staging:{token}"


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    def env(self, environment: str) -> EnvKeys:
        base = f"{self.prefix}{{{environment}}}"
        return EnvKeys(
            epoch=f"{base}:epoch",
            revision=f"{base}:rev",
            configs=f"{base}:configs",
            flags=f"{base}:flags",
            versions=f"{base}:versions",
            feed=f"{base}:feed",
            lock=f"{base}:rebuild-lock",
            applied=f"{base}:applied",
            ahead=f"{base}:applied-ahead",
        )

    @property
    def channel(self) -> str:
        return f"{self.prefix}changes"
