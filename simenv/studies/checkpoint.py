"""Checkpoints of a running job: its whole world every ``checkpoint_every`` ticks, so that a
killed job resumes from its last checkpoint instead of tick 0, with the same results.

A checkpoint is one file in the job's part folder (`Part.checkpoint`), written atomically
(`run_folder.atomic_write`: a crash leaves the previous checkpoint or the new one, whole)::

    recloop-checkpoint                 the first line names the format
    {"version": 1, "tick": T, ...}     one JSON line: the header (`Header`)
    <pickle of the World>              protocol 5

What is captured: the `World` is pickled whole, so nothing has to be listed by hand and nothing
added to the world later is forgotten: users (tastes, emotion, presence, memories, recent and
inbox rings, genre history), items and creators, the social graph, the policy with everything
it learned (factors, bandit counts, kept feedback), every generator of the `RngTree` (and
mesa's), the decider's state (an LLM decider's label priors, counters, reflections and item
embeddings), the metric rows and the interaction log so far. One pickle keeps the objects
shared inside the world shared. What is not captured: the decider's `attachments` (an LLM
backend with its cache connection and wrappers, a text embedder), which are stored by name
(pickle's persistent ids) and replaced, on loading, by the attachments of the decider the
resumed job makes (`load_checkpoint`). A world holding anything else that cannot be pickled (a
user's policy holding a lambda or an open file, say; the ``sb3`` policy's torch model pickles)
raises `CheckpointError` at the first checkpoint; the runner then runs that job without
checkpoints and says so.

A checkpoint is tied to its job: the header's ``key`` is a digest of the result configuration
(``config.yaml`` without the `RESULT_NEUTRAL` fields), of what the run was made with
(``made_with.json``: recloop version, data, model) and of the job's policy label and seed
(`checkpoint_key`). `load_checkpoint` refuses a file of another format version or of another
key with one clear line (`CheckpointError`), before unpickling anything. The runner removes
the checkpoint once the job's ``done`` marker is written (`Part.mark_done`).

Loading unpickles: read checkpoints from run folders you made, as you would run their code.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from scenarios.schema import Scenario
from simenv.studies.run_folder import RunFolderError, atomic_write, config_text, result_config
from simenv.world import World

MAGIC = b"recloop-checkpoint\n"
VERSION = 1
PROTOCOL = 5


class CheckpointError(RunFolderError):
    """A checkpoint that cannot be written, read or used for this job."""


@dataclass(frozen=True)
class Header:
    """The JSON line before the pickle: what a checkpoint is, read without unpickling."""

    version: int
    tick: int  # ticks done when it was written: the resumed job runs tick T next
    key: str  # `checkpoint_key` of the job that wrote it
    policy: str
    seed: int

    def as_json(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode() + b"\n"


def checkpoint_key(scenario: Scenario, made_with: dict[str, Any], label: str, seed: int) -> str:
    """SHA-256 of what a job's results depend on: the result configuration, the run's
    provenance, its policy label and seed."""
    text = json.dumps(
        {
            "config": result_config(config_text(scenario)),
            "made_with": made_with,
            "policy": label,
            "seed": seed,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()


class _Detaching(pickle.Pickler):
    """Stores the ``detached`` objects by name instead of by value."""

    def __init__(self, file: IO[bytes], detached: dict[int, str]) -> None:
        super().__init__(file, protocol=PROTOCOL)
        self._detached = detached

    def persistent_id(self, obj: Any) -> str | None:
        return self._detached.get(id(obj))


class _Attaching(pickle.Unpickler):
    """Puts ``attachments`` where the pickle names them."""

    def __init__(self, file: IO[bytes], attachments: dict[str, object], path: Path) -> None:
        super().__init__(file)
        self._attachments = attachments
        self._path = path

    def persistent_load(self, pid: Any) -> object:
        if pid not in self._attachments:
            raise CheckpointError(
                f"checkpoint {self._path} needs the decider's {pid!r}, which this job's decider "
                "does not have; delete the checkpoint to run the job from tick 0"
            )
        return self._attachments[pid]


def save_checkpoint(path: Path, world: World, key: str, label: str) -> int:
    """Write ``world`` (after ``world.tick`` ticks) to ``path`` atomically; returns its size
    in bytes. Raises `CheckpointError` when the world holds something that cannot be pickled."""
    header = Header(VERSION, world.tick, key, label, world.seed)
    attachments = world.decider.attachments()
    detached = {id(obj): name for name, obj in attachments.items()}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(MAGIC)
            f.write(header.as_json())
            if detached:
                _Detaching(f, detached).dump(world)
            else:
                pickle.dump(world, f, protocol=PROTOCOL)

    try:
        atomic_write(path, write)
    except (pickle.PicklingError, TypeError, AttributeError) as err:
        raise CheckpointError(f"the world cannot be checkpointed: {err}") from None
    return path.stat().st_size


def read_header(path: Path) -> Header:
    """The header of the checkpoint at ``path`` (nothing is unpickled)."""
    with open(path, "rb") as f:
        return _header(f, path)


def _header(f: IO[bytes], path: Path) -> Header:
    if f.readline() != MAGIC:
        raise CheckpointError(f"{path} is not a recloop checkpoint; delete it")
    try:
        data = json.loads(f.readline())
        header = Header(**data)
    except (ValueError, TypeError):
        raise CheckpointError(f"{path} has an unreadable header; delete it") from None
    if header.version != VERSION:
        raise CheckpointError(
            f"{path} is a checkpoint of format version {header.version}, this recloop reads "
            f"version {VERSION}; delete it to run the job from tick 0"
        )
    return header


def load_checkpoint(path: Path, key: str, attachments: dict[str, object]) -> World:
    """The world of the checkpoint at ``path``, with ``attachments`` (the resumed job's
    decider's) in place of the detached objects. Refuses (`CheckpointError`) a checkpoint of
    another format version or whose key is not ``key`` (another configuration, provenance,
    policy or seed), before anything is unpickled."""
    with open(path, "rb") as f:
        header = _header(f, path)
        if header.key != key:
            raise CheckpointError(
                f"{path} was written by another configuration (policy {header.policy!r}, seed "
                f"{header.seed}, other scenario or inputs); delete it to run the job from tick 0"
            )
        try:
            world = _Attaching(f, attachments, path).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as err:
            raise CheckpointError(f"{path} cannot be read ({err}); delete it") from None
    if not isinstance(world, World) or world.tick != header.tick:
        raise CheckpointError(f"{path} does not hold the world its header names; delete it")
    return world
