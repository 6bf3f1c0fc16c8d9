"""The ICT Face Model Light (MIT) as a FLAME-layout head: `load_ict_head()`.

    head = load_ict_head("semantic")          # or "pca"
    layer = FlameLayer(head.model, head.landmarks)

`head.model` is a `FlameModel` (metres, FLAME axes: y up, face along +z, +x the subject's left):
v_template [V,3] (V = 26,719), shapedirs [V,3,100+E] (n_shape = 100: ICT's identity modes, then
the E live expression columns; with flame_widths=True FLAME's widths instead: [V,3,300+100] or
[V,3,300+50], zero-padded, for tools that only read 300-column files), posedirs [V,3,36] (the jaw corrective in
the jaw's 9 features, zero elsewhere), J_regressor [5,V], weights [V,5], parents [-1,0,1,1,1]
(root, neck, jaw, left eye, right eye), f [F,3] (F = 52,220 triangles), vt [T,2], ft [F,3].

Expression parameterisations:
- "semantic": one column per ICT expression shape, ARKit names with _L/_R (52 columns: jawOpen
  is the jaw joint, see `IctHead.jaw_pose`);
- "pca": an orthogonal FLAME-like basis (50 components by default) of sampled mixes of the
  semantic shapes; `IctHead.semantic_to_pca` maps semantic weights to coefficients.

Everything is read from the committed asset (data/ict/, see docs/ict_head.md) into fresh arrays;
nothing is cached or written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from faceedit_core.errors import InputError
from faceedit_core.flame.ict_asset import read_asset, sparse_rows
from faceedit_core.flame.io import N_EXP_MAX, N_SHAPE_MAX, FlameModel, LandmarkEmbedding

PARAMETERISATIONS = ("semantic", "pca")
DEFAULT_PCA_COMPONENTS = 50
PARENTS = np.array([-1, 0, 1, 1, 1], np.int64)  # root, neck, jaw, left eye (+x), right eye
JOINT_NAMES = ("root", "neck", "jaw", "eye_left", "eye_right")
# parts not meant to be drawn by a plain rasteriser (game-engine helper meshes)
HELPER_PARTS = tuple(
    f"{part}_{side}" for part in ("lacrimal_fluid", "eye_blend", "eye_occlusion") for side in ("left", "right")
)


@dataclass(frozen=True)
class IctComponent:
    """One expression column: index (column among the expression coefficients), name ('mouthSmile_L'
    or 'pca07'), side ('L', 'R' or ''), facs (AU codes from ICT's table, e.g. ('AU12',)),
    description, region [V] float32 in [0,1] (offset magnitude / its maximum)."""

    index: int
    name: str
    side: str
    facs: tuple[str, ...]
    description: str
    region: np.ndarray = field(repr=False, compare=False)


@dataclass
class IctHead:
    """The ICT head in this project's types. See the module docstring for `model`'s arrays.

    landmarks: LandmarkEmbedding (static 51, dynamic [79,17], full 68); components: the live
    expression columns; n_identity = 100 (shape coefficients beyond are zero columns);
    vertex_part [V] / face_part [F] uint8 indexes part_labels; parts: name -> [start, end) vertex
    range; landmark_vertices [68]: ICT's Multi-PIE vertex ids; jaw_axis [3], jaw_centre [3] (m),
    jaw_open_angle (rad): the hinge fitted to jawOpen; semantic_names [S]; pca_mix [S,K] (PCA
    basis = semantic shapes @ pca_mix) and semantic_to_pca [K,S] (least squares), None for
    "semantic"; manifest: the asset's manifest (names, sources, measured figures)."""

    model: FlameModel
    landmarks: LandmarkEmbedding
    components: list[IctComponent]
    parameterisation: str
    n_identity: int
    vertex_part: np.ndarray
    face_part: np.ndarray
    part_labels: tuple[str, ...]
    parts: dict[str, tuple[int, int]]
    landmark_vertices: np.ndarray
    jaw_axis: np.ndarray
    jaw_centre: np.ndarray
    jaw_open_angle: float
    semantic_names: list[str]
    pca_mix: np.ndarray | None
    semantic_to_pca: np.ndarray | None
    manifest: dict

    @property
    def n_exp(self) -> int:
        """Live expression columns (the model's expression width may be padded past them)."""
        return len(self.components)

    @property
    def n_verts(self) -> int:
        return self.model.n_verts

    def part_mask(self, *names: str) -> np.ndarray:
        """bool [V]: vertices of the named parts (see `parts`; coarse names like 'eyeball_left' too)."""
        mask = np.zeros(self.n_verts, bool)
        for n in names:
            if n not in self.parts:
                raise InputError(f"unknown ICT part '{n}' (known: {sorted(self.parts)})")
            mask[slice(*self.parts[n])] = True
        return mask

    def jaw_pose(self, open_amount: float = 1.0) -> np.ndarray:
        """FLAME jaw_pose [3] (axis-angle) opening the jaw as jawOpen at weight `open_amount`:
        exact (with the pose corrective) at 0 and 1, a true rotation in between."""
        return (self.jaw_axis * self.jaw_open_angle * float(open_amount)).astype(np.float32)

    def expression_vector(self, weights: dict[str, float]) -> np.ndarray:
        """Expression coefficients [E] (the model's full expression width) for {name: weight}.
        Semantic names work for both parameterisations (PCA: least-squares coefficients); PCA
        component names ('pca03') only for "pca"."""
        out = np.zeros(self.model.n_exp, np.float32)
        sem = np.zeros(len(self.semantic_names))
        by_name = {c.name: c.index for c in self.components}
        for name, w in weights.items():
            if name in by_name:
                out[by_name[name]] += w
            elif name in self.semantic_names and self.parameterisation == "pca":
                sem[self.semantic_names.index(name)] += w
            else:
                raise InputError(
                    f"'{name}' is not an expression of this ICT head ({self.parameterisation}, "
                    f"{self.n_exp} columns); jawOpen is the jaw joint: use jaw_pose()"
                )
        if sem.any():
            out[: self.n_exp] += self.semantic_coefficients(sem).astype(np.float32)
        return out

    def semantic_coefficients(self, weights: np.ndarray) -> np.ndarray:
        """Semantic weights [...,S] -> this head's expression coefficients [...,n_exp]: the same
        for "semantic" (its first n_exp), least squares for "pca"."""
        w = np.asarray(weights, np.float64)
        if w.shape[-1] != len(self.semantic_names):
            raise InputError(f"semantic weights need {len(self.semantic_names)} values in the last axis, got {w.shape}")
        if self.semantic_to_pca is None:
            return w[..., : self.n_exp]
        return w @ self.semantic_to_pca.T


def _check(parameterisation: str, n_exp: int | None, n_semantic: int) -> int:
    if parameterisation not in PARAMETERISATIONS:
        raise InputError(f"parameterisation must be one of {PARAMETERISATIONS}, got '{parameterisation}'")
    if n_exp is None:
        return n_semantic if parameterisation == "semantic" else DEFAULT_PCA_COMPONENTS
    if not 1 <= int(n_exp) <= n_semantic:
        raise InputError(f"n_exp must be within 1..{n_semantic} for the ICT head, got {n_exp}")
    return int(n_exp)


def _components(names: list[str], facs_table: dict, rows: np.ndarray, descriptions: list[str]) -> list[IctComponent]:
    """rows [K,V,3] of the live columns -> IctComponent list (region = |offset| / max)."""
    mag = np.linalg.norm(rows, axis=2).T  # [V,K]
    mag /= np.maximum(mag.max(0, keepdims=True), 1e-20)
    out = []
    for k, name in enumerate(names):
        side = name[-1] if name[-2:] in ("_L", "_R") else ""
        facs = tuple(code for code, row in facs_table.items() if name in row["shapes"])
        out.append(IctComponent(k, name, side, facs, descriptions[k], np.ascontiguousarray(mag[:, k], np.float32)))
    return out


def load_ict_head(
    parameterisation: str = "semantic", n_exp: int | None = None, flame_widths: bool = False, folder=None
) -> IctHead:
    """The ICT head with the chosen expression parameterisation.

    n_exp: live expression columns (semantic: the first n_exp of the 52, default all; pca:
    components, default 50, at most 52). Default: the compact shapedirs [V,3,100+n_exp]
    (model.n_shape = 100; 48 MB of float32). flame_widths=True pads it to FLAME's 300 shape and 50
    or 100 expression columns (128 MB; for writing a file that tools reading only FLAME's widths
    take). shapedirs is a transposed view of a C-contiguous [L,V,3] array, the layout FlameLayer
    uses, so building a layer copies nothing. folder: another asset folder (tests).
    """
    arrays, manifest = read_asset(folder)
    semantic = list(manifest["semantic_names"])
    n_live = _check(parameterisation, n_exp, len(semantic))
    exp_names = manifest["expression_names"]
    V = int(manifest["n_verts"])
    n_id = int(manifest["n_identity"])

    width = (N_EXP_MAX if n_live > 50 else 50) if flame_widths else n_live
    n_shape_cols = N_SHAPE_MAX if flame_widths else n_id
    rows = np.zeros((n_shape_cols + width, V, 3), np.float32)  # [L,V,3]; shapedirs is its [V,3,L] view
    rows[:n_id] = arrays["identity"]
    live = rows[n_shape_cols : n_shape_cols + n_live]  # [n_live,V,3], filled below
    sem_cols = [exp_names.index(n) for n in semantic]
    mix = to_pca = None
    if parameterisation == "semantic":
        sparse_rows(arrays["exp_index"], arrays["exp_delta"], arrays["exp_ptr"], V, sem_cols[:n_live], out=live)
        names = semantic[:n_live]
        descriptions = [f"ICT expression shape {n}" for n in names]
    else:
        shapes = sparse_rows(arrays["exp_index"], arrays["exp_delta"], arrays["exp_ptr"], V, sem_cols)  # [S,V,3]
        mix = arrays["pca_mix"][:, :n_live]
        np.matmul(mix.T.astype(np.float32), shapes.reshape(len(sem_cols), -1), out=live.reshape(n_live, -1))
        gram = arrays["semantic_gram"]  # shapes^T shapes [S,S], float64
        to_pca = np.linalg.solve(mix.T @ gram @ mix, mix.T @ gram)
        names = [f"pca{k:02d}" for k in range(n_live)]
        strength = np.abs(mix) * np.sqrt(np.diag(gram))[:, None]
        top = np.argsort(-strength, axis=0)[:3]  # [3,K] strongest semantic shapes
        descriptions = [
            "PCA expression component; mostly " + ", ".join(semantic[s] for s in top[:, k]) for k in range(n_live)
        ]

    shapedirs = rows.transpose(1, 2, 0)
    axis, angle = arrays["jaw_axis"].astype(np.float64), float(arrays["jaw_angle"])
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    g = (K.reshape(-1) / (np.sin(angle) * np.sum(K * K))).astype(np.float32)
    posedirs = np.zeros((V, 3, 36), np.float32)
    posedirs[:, :, 9:18] = arrays["jaw_corrective"].astype(np.float32)[:, :, None] * g[None, None, :]

    model = FlameModel(
        v_template=arrays["v_template"].astype(np.float32),
        shapedirs=shapedirs,
        posedirs=posedirs,
        J_regressor=arrays["J_regressor"].astype(np.float32),
        weights=arrays["weights"].astype(np.float32),
        parents=PARENTS.copy(),
        f=arrays["f"].astype(np.int64),
        vt=arrays["vt"].astype(np.float32),
        ft=arrays["ft"].astype(np.int64),
        meta={
            "source": "ICT Face Model Light (MIT), converted by tools/ict/convert_ict.py",
            "upstream_commit": manifest["source"]["commit"],
            "parameterisation": parameterisation,
            "n_identity": n_id,
            "n_exp": n_live,
        },
        n_shape=n_shape_cols,
    )
    model.validate()
    landmarks = LandmarkEmbedding(
        static_faces=arrays["static_faces"].astype(np.int64),
        static_bary=arrays["static_bary"].astype(np.float32),
        dynamic_faces=arrays["dynamic_faces"].astype(np.int64),
        dynamic_bary=arrays["dynamic_bary"].astype(np.float32),
        full_faces=arrays["full_faces"].astype(np.int64),
        full_bary=arrays["full_bary"].astype(np.float32),
    ).validate(n_faces=len(model.f))
    labels = tuple(manifest["part_labels"])
    return IctHead(
        model=model,
        landmarks=landmarks,
        components=_components(names, manifest["facs"], live, descriptions),
        parameterisation=parameterisation,
        n_identity=n_id,
        vertex_part=arrays["vertex_part"].copy(),
        face_part=arrays["face_part"].copy(),
        part_labels=labels,
        parts={k: (int(a), int(b)) for k, (a, b) in manifest["vertex_ranges"].items()},
        landmark_vertices=arrays["landmark_vertices"].astype(np.int64),
        jaw_axis=axis,
        jaw_centre=arrays["jaw_centre"].copy(),
        jaw_open_angle=angle,
        semantic_names=semantic,
        pca_mix=mix,
        semantic_to_pca=to_pca,
        manifest=manifest,
    )


__all__ = ["IctComponent", "IctHead", "load_ict_head", "PARAMETERISATIONS", "JOINT_NAMES", "HELPER_PARTS"]
