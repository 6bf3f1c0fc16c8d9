"""68 landmarks on the ICT head in DECA's layout, from the vertex indices ICT publishes.

Every fixed landmark is a vertex: barycentric weight 1 on it, in the first (lowest index) face
of the face area that contains it. The yaw-dependent jaw contour (DECA's 79 x 17 table) is built
by landmark marching: each contour point slides along a track on the skin, from a point in front
of its frontal landmark, through it and ICT's jawline substitute behind it, to a point as far
behind that, following the outermost point of the track in the image as the head turns.
Pure numpy; run by the converter, stored in the asset.
"""

from __future__ import annotations

import heapq

import numpy as np

N_YAW_ROWS = 79  # DECA: row r <= 39 is +r degrees, row r >= 40 is -(r - 39) degrees
MAX_YAW_DEG = 39
TRACK_AHEAD = 2.0  # contour tracks reach this many (frontal -> jawline) steps in front of the frontal point
TRACK_BEHIND = 1.0  # ... and this many behind the jawline point


def row_yaw_deg(row: int) -> int:
    return row if row <= MAX_YAW_DEG else -(row - MAX_YAW_DEG)


def vertex_embedding(
    faces: np.ndarray, vertices: np.ndarray, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each vertex as (face, barycentric): faces [F,3], vertices [L] -> face ids [L] (the lowest
    index face containing it, among `allowed` [F] bool when given), bary [L,3] (1 on the vertex)."""
    ok = np.ones(len(faces), bool) if allowed is None else allowed
    out_f = np.zeros(len(vertices), np.int64)
    out_b = np.zeros((len(vertices), 3), np.float32)
    for i, v in enumerate(np.asarray(vertices)):
        hits = np.nonzero(ok[:, None] & (faces == v))
        if not len(hits[0]):
            raise ValueError(f"landmark vertex {v} is in no allowed face")
        out_f[i] = hits[0][0]
        out_b[i, hits[1][0]] = 1.0
    return out_f, out_b


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit normals: verts [V,3], faces [F,3] -> [V,3]."""
    tri = verts[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n = np.zeros_like(verts)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)


def edge_graph(faces: np.ndarray, n_verts: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mesh edges between allowed [V] vertices as CSR: (starts [V+1], neighbours [E])."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.unique(np.concatenate([e, e[:, ::-1]]), axis=0)
    e = e[allowed[e[:, 0]] & allowed[e[:, 1]]]
    return np.searchsorted(e[:, 0], np.arange(n_verts + 1)), e[:, 1]


def shortest_path(verts: np.ndarray, graph: tuple[np.ndarray, np.ndarray], start: int, goal: int) -> list[int]:
    """Dijkstra along mesh edges (graph from `edge_graph`): [start, ..., goal]."""
    starts, nbrs = graph
    dist = {start: 0.0}
    prev: dict[int, int] = {}
    heap = [(0.0, start)]
    done = set()
    while heap:
        d, u = heapq.heappop(heap)
        if u in done:
            continue
        done.add(u)
        if u == goal:
            break
        for w in nbrs[starts[u] : starts[u + 1]].tolist():
            nd = d + float(np.linalg.norm(verts[u] - verts[w]))
            if nd < dist.get(w, np.inf) - 1e-15:
                dist[w], prev[w] = nd, u
                heapq.heappush(heap, (nd, w))
    if goal not in done:
        raise ValueError(f"no path from vertex {start} to {goal} over the allowed vertices")
    path = [goal]
    while path[-1] != start:
        path.append(prev[path[-1]])
    return path[::-1]


def contour_track(verts: np.ndarray, graph, frontal: int, jawline: int, allowed: np.ndarray) -> tuple[list[int], int]:
    """A track for one contour landmark through its frontal point and its jawline substitute,
    extended at both ends: shortest edge paths from the vertex nearest frontal - TRACK_AHEAD *
    step (step = jawline - frontal) to the frontal point, on to the jawline point, and on to
    the vertex nearest jawline + TRACK_BEHIND * step. -> (vertex ids front to back, position of the
    frontal vertex). A point without a substitute (the chin) is a one-vertex track."""
    if frontal == jawline:
        return [frontal], 0
    cand = np.nonzero(allowed)[0]

    def nearest(p: np.ndarray) -> int:
        return int(cand[np.argmin(np.linalg.norm(verts[cand] - p, axis=1))])

    step = verts[jawline] - verts[frontal]
    start, end = nearest(verts[frontal] - TRACK_AHEAD * step), nearest(verts[jawline] + TRACK_BEHIND * step)
    first = shortest_path(verts, graph, start, frontal)
    second = shortest_path(verts, graph, frontal, jawline)
    third = shortest_path(verts, graph, jawline, end) if end != jawline else [jawline]
    return first + second[1:] + third[1:], len(first) - 1


def _outermost_arc(outward: np.ndarray, arc: np.ndarray) -> float:
    """Arc length of the track vertex farthest out in the image (first of equals)."""
    return float(arc[int(np.argmax(outward))])


def _edge_face(faces: np.ndarray, a: int, b: int, allowed: np.ndarray) -> tuple[int, int, int]:
    """(face id, slot of a, slot of b) of the lowest allowed face with the edge a-b."""
    has = allowed & (faces == a).any(1) & (faces == b).any(1)
    f = int(np.nonzero(has)[0][0])
    return f, int(np.nonzero(faces[f] == a)[0][0]), int(np.nonzero(faces[f] == b)[0][0])


def dynamic_contour(
    verts: np.ndarray,
    faces: np.ndarray,
    frontal: np.ndarray,
    jawline: np.ndarray,
    allowed_verts: np.ndarray,
    allowed_faces: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """DECA's yaw table for the 17 contour landmarks.

    verts [V,3] (neutral, FLAME axes), faces [F,3], frontal [17] (the frontal contour vertex ids),
    jawline [17] (ICT's jawline substitute for each; the frontal id itself where there is none),
    allowed_verts [V] / allowed_faces [F] bool (the face area).
    Landmark marching: with the head turned by yaw y about +y and seen along -z, a contour point
    of the subject's left (+x) side sits where its track reaches farthest to the image's right
    (x cos y + z sin y largest; mirrored on the right side). Row y moves each point along its
    track by as much as that outermost point moves between yaw 0 and yaw y, so row 0 is the
    frontal contour. -> faces [79,17], bary [79,17,3] float32, tracks.
    """
    graph = edge_graph(faces, len(verts), allowed_verts)
    out_f = np.zeros((N_YAW_ROWS, 17), np.int64)
    out_b = np.zeros((N_YAW_ROWS, 17, 3), np.float32)
    tracks = []
    for k in range(17):
        track, at = contour_track(verts, graph, int(frontal[k]), int(jawline[k]), allowed_verts)
        tracks.append(track)
        if len(track) == 1:
            fk, bk = vertex_embedding(faces, np.array(track), allowed_faces)
            out_f[:, k], out_b[:, k] = fk[0], bk[0]
            continue
        p = verts[track]
        arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
        side = np.sign(verts[frontal[k], 0])
        edges = [_edge_face(faces, track[i], track[i + 1], allowed_faces) for i in range(len(track) - 1)]

        def outermost(yaw_deg: float) -> float:
            y = np.radians(yaw_deg)
            return _outermost_arc(side * (p[:, 0] * np.cos(y) + p[:, 2] * np.sin(y)), arc)

        base = outermost(0.0)
        for row in range(N_YAW_ROWS):
            s = float(np.clip(arc[at] + outermost(row_yaw_deg(row)) - base, 0.0, arc[-1]))
            i = int(min(np.searchsorted(arc, s, side="right") - 1, len(track) - 2))
            t = (s - arc[i]) / max(arc[i + 1] - arc[i], 1e-20)
            f, sa, sb = edges[i]
            out_f[row, k] = f
            out_b[row, k, sa] = 1.0 - t
            out_b[row, k, sb] = t
    return out_f, out_b, tracks


def landmark_arrays(
    verts: np.ndarray,
    faces: np.ndarray,
    lmk68: np.ndarray,
    jawline17: np.ndarray,
    face_verts: np.ndarray,
    face_faces: np.ndarray,
) -> dict[str, np.ndarray]:
    """All of the LandmarkEmbedding arrays: lmk68 [68] vertex ids (iBUG order), jawline17 [17]
    substitutes (chin and unsubstituted points repeat lmk68), face_verts [V] / face_faces [F]
    bool (the face area). -> {static_faces [51], static_bary [51,3], dynamic_faces [79,17],
    dynamic_bary [79,17,3], full_faces [68], full_bary [68,3]}."""
    full_f, full_b = vertex_embedding(faces, lmk68, face_faces)
    dyn_f, dyn_b, _ = dynamic_contour(verts, faces, lmk68[:17], jawline17, face_verts, face_faces)
    return {
        "static_faces": full_f[17:].copy(),
        "static_bary": full_b[17:].copy(),
        "dynamic_faces": dyn_f,
        "dynamic_bary": dyn_b,
        "full_faces": full_f,
        "full_bary": full_b,
    }
