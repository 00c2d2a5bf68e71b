"""Redis key names. Every key of one environment shares the hash tag {<env>} so the Lua scripts
touch one slot (Redis Cluster-safe); the change channel is one per deployment (prefix).

Hash fields hold keys verbatim: a flag key or a segment name may be any Unicode, "|" included
(issue 10: names imported from Unleash). Fields stay unambiguous because what comes before the
first "|" never contains one: a service name (configs) or a one-letter kind (versions). Nothing
ever splits a field; they are only ever built from their parts."""

from __future__ import annotations

from dataclasses import dataclass

CONFIG = "c"
FLAG = "f"
SEGMENT = "s"
SEPARATOR = "|"  # never in a service name, an environment name or a kind; keys may hold it
_KIND = {"config": CONFIG, "flag": FLAG, "segment": SEGMENT}


def config_field(service_name: str | None, key: str) -> str:
    return f"{service_name or ''}{SEPARATOR}{key}"


def version_field(kind: str, field: str) -> str:
    return f"{_KIND[kind]}{SEPARATOR}{field}"


@dataclass(frozen=True, slots=True)
class EnvKeys:
    epoch: str  # the read model's generation; missing = not built (or Redis lost its data)
    revision: str  # the last revision of the environment's change feed
    configs: str  # hash: "<service or ''>|<key>" -> item JSON
    flags: str  # hash: "<flag key>" -> item JSON
    segments: str  # hash: "<segment name>" -> item JSON
    # hash: "c|<field>" / "f|<key>" / "s|<name>" -> version, kept after deletes (tombstones)
    versions: str
    feed: str  # stream of the last N change messages, for replay by cursor
    lock: str  # rebuild lock: the builder's fencing token, with a TTL the builder extends
    applied: str  # hash: shard -> the sequence number up to which all its changes are applied
    ahead: str  # set: "shard:number" applied above the shard's watermark (out of order)

    def data(self, kind: str) -> str:
        """The hash that holds the items of this kind (config, flag or segment)."""
        return {"config": self.configs, "flag": self.flags, "segment": self.segments}[kind]

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
            segments=f"{base}:segments",
            versions=f"{base}:versions",
            feed=f"{base}:feed",
            lock=f"{base}:rebuild-lock",
            applied=f"{base}:applied",
            ahead=f"{base}:applied-ahead",
        )

    @property
    def channel(self) -> str:
        return f"{self.prefix}changes"
