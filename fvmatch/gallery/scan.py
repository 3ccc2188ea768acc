"""Exhaustive reads of a gallery's stored vectors: for scores no index can search (a linear head's reading of every
item, fvmatch.evidence.attributes), where every item of a modality is scored and the identities ranked by their best item."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from fvmatch.gallery.gallery import Candidate


def stored_vectors(gallery, modality: str, space: str, identity: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(media ids, vectors) of every item of `modality` with a vector in `space` (of one identity's label, if given)."""
    where, values = "vectors.space = ? AND media.modality = ?", [space, modality]
    if identity is not None:
        where += " AND media.identity_id = (SELECT id FROM identities WHERE label = ?)"
        values.append(identity)
    rows = gallery.db.execute("SELECT vectors.media_id, vectors.embedding FROM vectors JOIN media ON media.id = "
                              f"vectors.media_id WHERE {where} ORDER BY vectors.media_id", values).fetchall()
    ids = np.array([row[0] for row in rows], dtype=np.int64)
    vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), gallery.dim(space))
    return ids, vectors


def stored_ages(gallery, ids: np.ndarray) -> list[dict]:
    """Each item's stored age reading (its quality's `age`, read when it was enrolled), as a quality dict holding that
    alone ({} where it has none), in the order of `ids`: SQLite extracts it, so the rest of the quality is not parsed."""
    import json

    found = {}
    for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
        chunk = [int(i) for i in ids[start:start + 900]]
        found.update(gallery.db.execute("SELECT id, json_extract(quality_json, '$.age') FROM media WHERE id IN "
                                        f"({','.join('?' * len(chunk))})", chunk).fetchall())
    return [{"age": json.loads(found[int(i)])} if found.get(int(i)) else {} for i in ids]


def ranked_by(gallery, ids: np.ndarray, keys: Sequence[tuple], score: Callable[[tuple], float], space: str,
              top: int) -> list[Candidate]:
    """Identities ranked by their best item, items compared by `keys` (one sortable tuple an item, higher better);
    each Candidate's score is `score(key)` of its best item."""
    if len(ids) == 0:
        return []
    details = {}
    for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
        chunk = [int(i) for i in ids[start : start + 900]]
        details.update({row[0]: row[1:] for row in gallery.db.execute(
            "SELECT media.id, identities.label, media.modality, media.source_path FROM media JOIN identities ON "
            f"identities.id = media.identity_id WHERE media.id IN ({','.join('?' * len(chunk))})", chunk)})
    best: dict[str, tuple[tuple, int]] = {}
    compared: dict[str, int] = {}
    for media_id, key in zip(ids.tolist(), keys):
        if media_id not in details:
            continue
        identity = details[media_id][0]
        compared[identity] = compared.get(identity, 0) + 1
        if identity not in best or key > best[identity][0]:
            best[identity] = (key, media_id)
    order = sorted(best.items(), key=lambda entry: (tuple(-value for value in entry[1][0]), entry[0]))[:top]
    return [Candidate(rank, identity, score(key), details[media_id][1], media_id, details[media_id][2],
                      compared[identity], space) for rank, (identity, (key, media_id)) in enumerate(order, start=1)]


def identity_items(gallery, labels: Sequence[str], modality: str, space: str,
                   first: int) -> dict[str, tuple[list[int], list[str], np.ndarray]]:
    """Per identity label: (media ids, source paths, vectors) of its first `first` items of `modality` with a vector
    in `space`, in enrolment order (identities without one are absent)."""
    found: dict[str, tuple[list[int], list[str], list[bytes]]] = {}
    for start in range(0, len(labels), 900):  # SQLite's bound-parameter limit
        chunk = list(labels[start:start + 900])
        # CROSS JOIN keeps identities the outer loop: the labels' rows, then their media by media_by_identity (left
        # to itself, SQLite walks every item of the modality in id order, a second at a million items)
        rows = gallery.db.execute(
            "SELECT identities.label, media.id, media.source_path, vectors.embedding FROM identities"
            " CROSS JOIN media ON media.identity_id = identities.id"
            " JOIN vectors ON vectors.media_id = media.id AND vectors.space = ?"
            f" WHERE identities.label IN ({','.join('?' * len(chunk))}) AND media.modality = ?",
            [space, *chunk, modality]).fetchall()
        for label, media_id, source_path, blob in sorted(rows, key=lambda row: row[1]):
            ids, paths, blobs = found.setdefault(label, ([], [], []))
            if len(ids) < first:
                ids.append(media_id)
                paths.append(source_path)
                blobs.append(blob)
    return {label: (ids, paths, np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), gallery.dim(space)))
            for label, (ids, paths, blobs) in found.items()}
