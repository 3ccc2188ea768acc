"""The real fvmatch CLI with the embedder replaced by a replay of real embeddings, and optional kill points.

    python tests/replay_cli.py TABLE.npz enroll --manifest M.csv --gallery G --json

TABLE.npz holds, per file content (sha256), the vectors (one per embedding space) and quality figures the real
spaces gave when a real `fvmatch enroll` embedded that file (`write_replay_table`), and the model ids it recorded. Everything else is the
real command: the write lock, SQLite, hnswlib, the audit trail, the output and the exit code. Without torch a run
starts in a third of a second, so a test can kill and re-run enrolments dozens of times.

Test-side settings (environment; fvmatch itself reads none of them):
    REPLAY_KILL   where the process SIGKILLs itself:
                  line:K             before the K-th line run in fvmatch's storage code (see STORAGE_CODE)
                  added:N            right after the N-th Gallery.add returned (its batch committed)
                  before-commit:N    inside the N-th Gallery.add, rows inserted, just before COMMIT
                  before-milvus:N    a team gallery: the N-th Gallery.add committed, its vectors not yet in Milvus
                  created            the new gallery's schema built, its metadata not yet written or renamed
                  index-temp:N       N-th index save: index and sidecar in temporary files, nothing renamed
                  index-torn:N       the same, the temporary index cut in half (as by a kill mid-write)
                  index-renamed:N    N-th index save: index renamed into place, its sidecar not yet
    REPLAY_COUNT_LINES=1  print "replay-lines K" on stderr at exit (how many lines line:K can choose from)
    REPLAY_FAULT  a storage fault to inject: "db-full" (no SQLite database may grow: each connection's
                  max_page_count is pinned to the file's size, so SQLite fails with SQLITE_FULL as on a full disk),
                  "index-short" (hnswlib writes only half of each index file and reports nothing, as it does on a
                  full disk)
    REPLAY_BATCH  enrolment batch size (default: fvmatch's)
    REPLAY_MEMORY_MARGIN_MB  when the command opens the gallery, cap the address space at what the process then
                  holds plus this many MiB (a machine whose memory the gallery's index exceeds)
    REPLAY_DELAY  seconds each embedding takes (widens the windows a concurrency test wants to hit)
It prints "replay-start" on stderr when the command begins.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

STORAGE_CODE = ("fvmatch/gallery/", "fvmatch/enrollment/enroll.py", "fvmatch/audit/trail.py", "fvmatch/commands/analyst.py")
SCRIPT = Path(__file__).resolve()


@dataclass
class Reference:
    """A tiny synthetic corpus, enrolled once by the real CLI with the real model (the never-killed run)."""

    corpus: Path
    gallery: Path
    table: Path
    model_id: str
    rows: list[tuple[str, str, str, str]]  # (identity, modality, path relative to corpus, sha256), by identity
    embeddings: dict[tuple[str, str], bytes]  # (modality, sha256) -> float32 joint embedding as stored

    def manifest(self, name: str, identities) -> Path:
        """A manifest (in the corpus folder) of these identities' files, identity by identity."""
        path = self.corpus / name
        lines = [f"{identity},{modality},{relative}" for identity, modality, relative, _ in self.rows
                 if identity in identities]
        path.write_text("identity,modality,path\n" + "\n".join(lines) + "\n")
        return path

    @property
    def identities(self) -> list[str]:
        return sorted({row[0] for row in self.rows})

    def stored(self, identities=None) -> set[tuple[str, str, str]]:
        return {(i, m, s) for i, m, _, s in self.rows if identities is None or i in identities}


_references: dict[Path, Reference] = {}


def build_reference(tmp_path_factory) -> Reference:
    """Synthesise 6 identities (2 faces, 2 voices each), enroll them with the real CLI, keep the replay table.

    Built once per test session, whichever module asks first; about 7 s on 2 CPU cores.
    """
    key = tmp_path_factory.getbasetemp()
    if key in _references:
        return _references[key]
    from mediagen import run_cli

    from fvmatch.synth import CorpusSpec, write_corpus

    root = tmp_path_factory.mktemp("reference")
    corpus, gallery, table = root / "corpus", root / "reference-gallery", root / "replay.npz"
    write_corpus(corpus, CorpusSpec(identities=6, seed=11, faces_per_identity=2, clips_per_identity=2,
                                    clip_seconds=2.0), workers=1)
    result = run_cli("enroll", "--manifest", corpus / "manifest.csv", "--gallery", gallery, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["enrolled"] == 24
    write_replay_table(gallery, table)
    connection = sqlite3.connect(gallery / "gallery.db")
    stored = connection.execute("SELECT identities.label, media.modality, media.source_path, media.sha256, "
                                "vectors.embedding FROM media JOIN identities ON identities.id = media.identity_id "
                                "JOIN vectors ON vectors.media_id = media.id AND vectors.space = 'joint' "
                                "ORDER BY identities.label, media.modality, media.source_path").fetchall()
    model_id = connection.execute("SELECT value FROM meta WHERE key = 'model_id'").fetchone()[0]
    connection.close()
    reference = Reference(corpus, gallery, table, model_id,
                          [(i, m, str(Path(p).relative_to(corpus.resolve())), s) for i, m, p, s, _ in stored],
                          {(m, s): e for _, m, _, s, e in stored})
    _references[key] = reference
    return reference


def replay_command(table: Path, *args) -> list[str]:
    return [sys.executable, str(SCRIPT), str(table), *map(str, args)]


def replayed_gallery(reference: Reference, directory: Path, manifest_name: str, rows) -> Path:
    """A gallery enrolled by the replayed `enroll --manifest` of `rows` (a module fixture's starting point)."""
    import subprocess

    result = subprocess.run(replay_command(reference.table, "enroll", "--manifest",
                                           reference.manifest(manifest_name, rows), "--gallery", directory),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return directory


def write_replay_table(gallery: Path, out: Path) -> None:
    """The embeddings a real enrolment stored in `gallery`, keyed by file content, for replay."""
    connection = sqlite3.connect(gallery / "gallery.db")
    rows = connection.execute("SELECT id, sha256, modality, quality, quality_json FROM media ORDER BY id").fetchall()
    meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
    spaces = json.loads(meta["spaces"])
    arrays = {}
    for space, info in spaces.items():  # a (rows, dim) array per space; rows of another modality stay zero
        vectors = np.zeros((len(rows), info["dim"]), np.float32)
        stored = dict(connection.execute("SELECT media_id, embedding FROM vectors WHERE space = ?", [space]).fetchall())
        for row, (media_id, *_) in enumerate(rows):
            if media_id in stored:
                vectors[row] = np.frombuffer(stored[media_id], np.float32)
        arrays[f"space:{space}"] = vectors
    connection.close()
    np.savez(out, sha256=np.array([r[1] for r in rows]), modality=np.array([r[2] for r in rows]),
             quality=np.array([r[3] for r in rows]), quality_json=np.array([r[4] for r in rows]),
             model_id=np.array(meta["model_id"]), model_path=np.array(meta["model_path"]),
             spaces=np.array(json.dumps(spaces)), **arrays)


@dataclass
class _Embedding:
    modality: str
    vectors: dict[str, np.ndarray]
    model_ids: dict[str, str]
    quality: dict = field(default_factory=dict)


@dataclass
class _Crop:
    probability: float


@dataclass
class _Face:
    crop: _Crop
    details: dict
    row: int  # the row of the table, standing in for each space's prepared input

    def quality(self) -> dict:
        return self.details


@dataclass
class _Space:
    model_id: str
    dim: int


class ReplayEmbedder:
    """What fvmatch.analysis.embedder.Embedder offers to enroll and identify, answered from the table."""

    def __init__(self, table: Path, delay_seconds: float = 0.0) -> None:
        data = np.load(table)
        self.row = {(m, s): i for i, (s, m) in enumerate(zip(data["sha256"], data["modality"]))}
        self.spaces = {name: _Space(info["model_id"], info["dim"]) for name, info in json.loads(str(data["spaces"])).items()}
        self.vectors = {name: data[f"space:{name}"] for name in self.spaces}
        self.modality = data["modality"]
        self.quality = data["quality"]
        self.quality_json = data["quality_json"]
        self.model_id = str(data["model_id"])
        self.checkpoint_path = str(data["model_path"])
        self.embedding_dim = self.spaces["joint"].dim
        self.card = {"model_id": self.model_id, "embedding_dim": self.embedding_dim}
        self.delay_seconds = delay_seconds

    def _lookup(self, path, modality: str) -> int:
        from fvmatch.enrollment.enroll import file_digest
        from fvmatch.errors import UnreadableMedia

        time.sleep(self.delay_seconds)
        row = self.row.get((modality, file_digest(Path(path))[0]))
        if row is None:
            raise UnreadableMedia(path, f"not in the replay table as a {modality}")
        return row

    @property
    def calibration(self) -> dict:
        from fvmatch.evidence.rules import effective_calibration

        return effective_calibration(self.card)

    def space(self, name: str) -> _Space:
        return self.spaces[name]

    def space_info(self, name: str) -> dict:
        return {"model_id": self.spaces[name].model_id, "dim": self.spaces[name].dim}

    def _spaces_of(self, row: int, spaces) -> list[str]:
        return list(spaces) if spaces is not None else [
            name for name in self.spaces if self.vectors[name][row].any()]

    def _embedding(self, row: int, spaces) -> _Embedding:
        names = self._spaces_of(row, spaces)
        return _Embedding(str(self.modality[row]), {name: self.vectors[name][row] for name in names},
                          {name: self.spaces[name].model_id for name in names}, json.loads(str(self.quality_json[row])))

    def prepare_face(self, path, spaces, all_faces: bool = False) -> list[_Face]:
        row = self._lookup(path, "face")
        return [_Face(_Crop(float(self.quality[row])), json.loads(str(self.quality_json[row])), row)]

    def embed_prepared_faces(self, faces, spaces) -> list[dict]:
        return [{name: self.vectors[name][face.row] for name in spaces} for face in faces]

    def embed_face(self, path, all_faces: bool = False, spaces=None, read_age: bool = True) -> list[_Embedding]:
        return [self._embedding(self._lookup(path, "face"), spaces)]

    def embed_voice(self, path, spaces=None, pick=None, audio_track=None) -> _Embedding:
        # every space asked for, `pick` or not: the embedder's contract (pick trims only what a short recording needs)
        return self._embedding(self._lookup(path, "voice"), spaces)

    def embed_voices(self, paths, spaces=None, pick=None) -> list:
        from fvmatch.errors import FvmatchError

        results = []
        for path in paths:
            try:
                results.append(self.embed_voice(path, spaces))
            except FvmatchError as error:
                results.append(error)
        return results


def install_replay(table: Path, delay_seconds: float) -> None:
    """Put a stand-in `fvmatch.analysis.embedder` module in place before the CLI imports it (so torch is never loaded)."""
    replay = ReplayEmbedder(table, delay_seconds)
    module = types.ModuleType("fvmatch.analysis.embedder")

    class Embedder:
        @classmethod
        def load(cls, path=None, device: str = "cpu", **options) -> ReplayEmbedder:
            return replay

    def embedder_for_gallery(gallery, model_path=None, device: str = "cpu", **options) -> ReplayEmbedder:
        gallery.check_model(replay.model_id)
        return replay

    module.Embedder, module.embedder_for_gallery = Embedder, embedder_for_gallery
    sys.modules["fvmatch.analysis.embedder"] = module


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install_kill(spec: str) -> None:
    """Arrange for the process to SIGKILL itself at the point `spec` names (see the module's docstring)."""
    from fvmatch.gallery import database as database_module, gallery as gallery_module, milvus_indexes, postgres

    point, _, number = spec.partition(":")
    target = int(number or 1)
    hits = {"add": 0, "index": 0}
    if point == "line":
        count_lines(stop_at=target)
    elif point in ("added", "before-commit"):
        original_add = gallery_module.Gallery.add
        exits = {kind: kind.__exit__ for kind in (database_module.Transaction, postgres.PostgresTransaction)}
        adding = []

        def add(self, items, **options):
            hits["add"] += 1
            adding.append(True)
            try:
                ids = original_add(self, items, **options)
            finally:
                adding.pop()
            if point == "added" and hits["add"] == target:
                _die()
            return ids

        def exiting(kind):
            def exit_(self, exc_type, exc, traceback):
                if point == "before-commit" and adding and exc_type is None and hits["add"] == target:
                    _die()
                return exits[kind](self, exc_type, exc, traceback)
            return exit_

        gallery_module.Gallery.add = add
        for kind in exits:
            kind.__exit__ = exiting(kind)
    elif point == "before-milvus":
        original_milvus_add = milvus_indexes.MilvusIndexes.add

        def milvus_add(self, *args):
            hits["add"] += 1
            if hits["add"] == target:
                _die()
            return original_milvus_add(self, *args)

        milvus_indexes.MilvusIndexes.add = milvus_add
    elif point == "created":
        original_migrate = database_module.migrate

        def migrate(db):
            original_migrate(db)
            _die()

        database_module.migrate = migrate
    elif point.startswith("index-"):
        original_replace = os.replace

        def replace(source, destination, **options):
            if not str(destination).endswith(".hnsw"):
                return original_replace(source, destination, **options)
            hits["index"] += 1
            if hits["index"] != target:
                return original_replace(source, destination, **options)
            if point == "index-torn":
                size = os.path.getsize(source)
                os.truncate(source, size // 2)
            if point in ("index-temp", "index-torn"):
                _die()
            original_replace(source, destination, **options)
            _die()

        os.replace = replace
    else:
        raise SystemExit(f"replay_cli: unknown kill point {spec!r}")


def install_fault(fault: str) -> None:
    """Make the storage misbehave as REPLAY_FAULT says (see the module's docstring)."""
    if fault == "db-full":
        connect = sqlite3.connect

        def full_connect(*args, **options):
            connection = connect(*args, **options)
            pages = connection.execute("PRAGMA page_count").fetchone()[0]
            connection.execute(f"PRAGMA max_page_count = {max(pages, 1)}")
            return connection

        sqlite3.connect = full_connect
    elif fault == "index-short":
        import hnswlib

        save_index = hnswlib.Index.save_index

        def short_save_index(self, path):
            save_index(self, path)
            os.truncate(path, os.path.getsize(path) // 2)

        hnswlib.Index.save_index = short_save_index
    else:
        raise SystemExit(f"replay_cli: unknown fault {fault!r}")


def limit_memory_on_open(margin_mib: int) -> None:
    """Cap the address space when the gallery is opened: what the process then holds, plus `margin_mib`."""
    import importlib
    import resource

    from fvmatch.gallery import gallery as gallery_module

    importlib.import_module("hnswlib")  # loaded before the cap, as it would be on a machine with little memory

    original_open = gallery_module.Gallery.open.__func__

    def open_(cls, *args, **options):
        with open("/proc/self/statm") as handle:
            held = int(handle.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (held + (margin_mib << 20), resource.RLIM_INFINITY))
        return original_open(cls, *args, **options)

    gallery_module.Gallery.open = classmethod(open_)


def count_lines(stop_at: int | None = None, report: bool = False) -> None:
    """Count the lines run in STORAGE_CODE; SIGKILL before line `stop_at`; with `report`, print the count at exit."""
    import atexit

    count = 0

    def local(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
            if count == stop_at:
                _die()
        return local

    def calls(frame, event, arg):
        filename = frame.f_code.co_filename.replace(os.sep, "/")
        return local if any(part in filename for part in STORAGE_CODE) else None

    sys.settrace(calls)
    if report:
        atexit.register(lambda: print(f"replay-lines {count}", file=sys.stderr, flush=True))


def main(argv: list[str]) -> None:
    install_replay(Path(argv[0]), float(os.environ.get("REPLAY_DELAY", "0")))
    import fvmatch.cli
    import fvmatch.enrollment.enroll

    if os.environ.get("REPLAY_BATCH"):
        fvmatch.enrollment.enroll.BATCH_SIZE = int(os.environ["REPLAY_BATCH"])
    if os.environ.get("REPLAY_KILL"):
        install_kill(os.environ["REPLAY_KILL"])
    if os.environ.get("REPLAY_FAULT"):
        install_fault(os.environ["REPLAY_FAULT"])
    if os.environ.get("REPLAY_COUNT_LINES"):
        count_lines(report=True)
    if os.environ.get("REPLAY_MEMORY_MARGIN_MB"):
        limit_memory_on_open(int(os.environ["REPLAY_MEMORY_MARGIN_MB"]))
    sys.argv = ["fvmatch", *argv[1:]]
    print("replay-start", file=sys.stderr, flush=True)
    fvmatch.cli.main()


if __name__ == "__main__":
    main(sys.argv[1:])
