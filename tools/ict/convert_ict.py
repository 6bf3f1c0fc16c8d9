#!/usr/bin/env python
"""Convert the ICT Face Model Light (ICT-VGL/ICT-FaceKit, MIT) into FaceEdit's ICT head asset.

    python tools/ict/convert_ict.py --repo /work/.mirror/ICT-VGL+ICT-FaceKit/repo \
        --out faceedit_core/flame/data/ict/

Reads the OBJs straight from the bare git directory (`git show`), converts centimetres to
metres (ICT's axes already are FLAME's: y up, face along +z, +x the subject's left) and moves
the origin so the eyeball centres sit where FLAME-layout heads have them. Fits the jaw hinge,
skinning, landmarks and the PCA expression space, quantises, and writes ict_head.npz,
manifest.json and upstream's LICENSE. Deterministic: the same upstream commit gives the same
arrays (see docs/ict_head.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from ict_obj import read_obj, read_obj_vertices, triangulate  # noqa: E402
from upstream import GitRepo, parse_readme, snake  # noqa: E402

from faceedit_core.flame import ict_asset, ict_landmarks, ict_pca, ict_rig  # noqa: E402

CM_TO_M = 0.01
EYE_TARGET = np.array([0.0, 0.027, 0.054])  # midpoint of the eyeball centres (m), as the demo head
SPARSE_TOL = 5e-7  # m: expression offsets below this are not stored
N_IDENTITY = 100
JAW_SHAPE = "jawOpen"  # driven by the jaw joint, not an expression column
N_PCA_REPORT = 50
PART_LABELS = (
    "face",
    "head_neck",
    "mouth_socket",
    "eye_socket_left",
    "eye_socket_right",
    "gums_tongue",
    "teeth_upper",
    "teeth_lower",
    "sclera_left",
    "iris_left",
    "sclera_right",
    "iris_right",
    "lacrimal_fluid_left",
    "lacrimal_fluid_right",
    "eye_blend_left",
    "eye_blend_right",
    "eye_occlusion_left",
    "eye_occlusion_right",
    "eyelashes_left",
    "eyelashes_right",
)


def part_tables(facts) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Vertex and polygon half-open ranges by part name (coarse parts, details, upper/lower teeth)."""
    verts, polys = {}, {}
    for heading, rows in facts.tables.items():
        for name, vr, pr in rows:
            key = snake(name)
            if key == "all":
                continue
            verts[key], polys[key] = list(vr), list(pr)
    for jaw in ("upper", "lower"):
        rows = [r for r in facts.tables["Teeth Details"] if f" {jaw} " in f" {r[0].lower()} "]
        v0, v1 = min(r[1][0] for r in rows), max(r[1][1] for r in rows)
        p0, p1 = min(r[2][0] for r in rows), max(r[2][1] for r in rows)
        if sum(r[1][1] - r[1][0] for r in rows) != v1 - v0:
            raise ValueError(f"{jaw} teeth are not one contiguous vertex range")
        verts[f"teeth_{jaw}"], polys[f"teeth_{jaw}"] = [v0, v1], [p0, p1]
    return verts, polys


def labels(ranges: dict[str, list[int]], n: int) -> np.ndarray:
    out = np.full(n, 255, np.uint8)
    for i, name in enumerate(PART_LABELS):
        a, b = ranges[name]
        out[a:b] = i
    if (out == 255).any():
        raise ValueError(f"{int((out == 255).sum())} elements belong to no part")
    return out


def quant_error(src: np.ndarray, stored: np.ndarray) -> dict:
    """Max per-vertex distance (m) and max component error between float64 source and stored."""
    e = np.linalg.norm(src - stored, axis=-1)
    return {"max_vertex_m": float(e.max()), "rms_vertex_m": float(np.sqrt(np.mean(e**2)))}


def convert(repo_dir: str, out_dir: str, log=print) -> dict:
    t0 = time.time()
    repo = GitRepo(repo_dir)
    readme = repo.read("README.md").decode()
    facts = parse_readme(readme)
    config = json.loads(repo.read("FaceXModel/vertex_indices.json"))
    if config["idx_to_landmark_verts"] != facts.landmarks68:
        raise ValueError("README's 68 landmarks differ from vertex_indices.json")
    for sub, ext in ((facts.jawline_right, facts.extended_right), (facts.jawline_left, facts.extended_left)):
        if not set(sub) <= set(ext):
            raise ValueError("a jawline is not a subset of its extended jawline")
    vranges, pranges = part_tables(facts)

    mesh = read_obj(repo.read("FaceXModel/generic_neutral_mesh.obj"))
    V = len(mesh.verts)
    f, ft, tri_poly = triangulate(mesh)
    neutral = mesh.verts * CM_TO_M
    # axes: check rather than assume (y up, face along +z, +x the subject's left)
    lm = np.array(facts.landmarks68)
    left_eye = neutral[slice(*vranges["eyeball_left"])].mean(0)
    if not (
        np.argmax(neutral[:, 2]) in range(*vranges["face"])
        and left_eye[0] > 0
        and neutral[lm[27], 1] > neutral[lm[8], 1]
        and neutral[lm[30], 2] > neutral[lm[0], 2]
    ):
        raise ValueError("ICT axes are not y up / +z forward / +x left as expected")
    eyes = [ict_rig.eyeball_centre(neutral[slice(*vranges[f"sclera_{s}"])]) for s in ("left", "right")]
    shift = EYE_TARGET - 0.5 * (eyes[0] + eyes[1])
    shift[0] = 0.0  # keep the midline at x = 0 exactly
    v_template = neutral + shift

    log(f"neutral: {V} vertices, {len(f)} triangles, shift {np.round(shift, 5).tolist()} m ({time.time() - t0:.1f}s)")
    id_names = [f"identity{i:03d}" for i in range(N_IDENTITY)]
    identity = np.stack([read_obj_vertices(repo.read(f"FaceXModel/{n}.obj")) * CM_TO_M - neutral for n in id_names])
    exp_names = list(config["expressions"])
    expressions = np.stack([read_obj_vertices(repo.read(f"FaceXModel/{n}.obj")) * CM_TO_M - neutral for n in exp_names])
    log(f"read {len(id_names)} identity and {len(exp_names)} expression meshes ({time.time() - t0:.1f}s)")

    identity16 = identity.astype(np.float16)
    exp_index, exp_delta, exp_ptr = ict_asset.sparse_pack(expressions, SPARSE_TOL)
    exp_stored = ict_asset.sparse_unpack(exp_index, exp_delta, exp_ptr, V, dtype=np.float64).transpose(2, 0, 1)
    errors = {
        "identity": quant_error(identity, identity16.astype(np.float64)),
        "expressions": quant_error(expressions, exp_stored),
    }

    jaw_col = exp_names.index(JAW_SHAPE)
    rig = ict_rig.build_rig(v_template, f, exp_stored[jaw_col], vranges)
    jaw_corr16 = rig.jaw_corrective.astype(np.float16)
    errors["jaw_corrective"] = quant_error(rig.jaw_corrective, jaw_corr16.astype(np.float64))
    target = v_template + exp_stored[jaw_col]
    posed = ict_rig.posed_jaw(
        v_template, rig.weights.astype(np.float32).astype(np.float64), rig.hinge, jaw_corr16.astype(np.float64)
    )
    err = np.linalg.norm(posed - target, axis=1)
    face_idx = slice(*vranges["face"])
    rig.figures.update(
        {
            "with_corrective_face_rms_m": float(np.sqrt(np.mean(err[face_idx] ** 2))),
            "with_corrective_face_max_m": float(err[face_idx].max()),
            "with_corrective_all_max_m": float(err.max()),
        }
    )
    log(
        f"jaw hinge: {np.degrees(rig.hinge.angle):.2f} deg about {np.round(rig.hinge.axis, 4).tolist()} "
        f"through {np.round(rig.hinge.centre, 4).tolist()}; lower-teeth residual {rig.hinge.rms * 1e3:.3f} mm rms"
    )

    face_v = np.zeros(V, bool)
    face_v[slice(*vranges["face"])] = True
    face_f = np.zeros(len(f), bool)
    face_f[(tri_poly >= pranges["face"][0]) & (tri_poly < pranges["face"][1])] = True
    jaw17 = np.array(facts.jawline_right + [lm[8]] + facts.jawline_left)
    lmk = ict_landmarks.landmark_arrays(v_template, f, lm, jaw17, face_v, face_f)
    log(f"landmarks and contour table ({time.time() - t0:.1f}s)")

    semantic = [n for n in exp_names if n != JAW_SHAPE]
    sem_cols = [exp_names.index(n) for n in semantic]
    shapes = exp_stored[sem_cols].reshape(len(sem_cols), -1).T  # [3V,S] float64 of the stored f16
    mix, explained = ict_pca.fit_mix(shapes, semantic)
    pca = pca_figures(shapes, mix, semantic)
    log(
        f"PCA: {N_PCA_REPORT} components leave {1 - explained[N_PCA_REPORT - 1]:.2e} of the samples' energy; "
        f"held-out mixes within {pca['mix_max_m'] * 1e3:.3f} mm ({time.time() - t0:.1f}s)"
    )

    poly_part = labels(pranges, len(mesh.poly_v))
    arrays = {
        "v_template": v_template.astype(np.float32),
        "f": f.astype(np.int32),
        "ft": ft.astype(np.int32),
        "vt": mesh.uvs.astype(np.float32),
        "vertex_part": labels(vranges, V),
        "face_part": poly_part[tri_poly],
        "identity": identity16,
        "exp_index": exp_index,
        "exp_delta": exp_delta,
        "exp_ptr": exp_ptr,
        "J_regressor": rig.J_regressor.astype(np.float32),
        "weights": rig.weights.astype(np.float32),
        "jaw_corrective": jaw_corr16,
        "jaw_axis": rig.hinge.axis,
        "jaw_centre": rig.hinge.centre,
        "jaw_angle": np.array(rig.hinge.angle),
        "landmark_vertices": lm.astype(np.int32),
        "pca_mix": mix,
        "pca_explained": explained,
        "semantic_gram": shapes.T @ shapes,
        **{k: (v.astype(np.int32) if v.dtype.kind == "i" else v.astype(np.float32)) for k, v in lmk.items()},
    }
    facs = {code: {"description": desc, "shapes": shapes_} for code, (desc, shapes_) in facts.facs.items()}
    manifest = {
        "format_version": ict_asset.FORMAT_VERSION,
        "source": {
            "name": "ICT Face Model Light (ICT-FaceKit)",
            "url": "https://github.com/ICT-VGL/ICT-FaceKit",
            "licence": "MIT, Copyright (c) 2020 USC Institute for Creative Technologies (see LICENSE)",
            "commit": repo.commit,
            "sha256": dict(sorted(repo.hashes.items())),
        },
        "conversion": {
            "scale_to_m": CM_TO_M,
            "axes": "ICT's own (y up, +z forward, +x subject's left): unchanged",
            "translation_m": shift.tolist(),
            "eye_midpoint_m": EYE_TARGET.tolist(),
            "sparse_tol_m": SPARSE_TOL,
            "triangulation": "quads split along the shorter diagonal",
        },
        "n_verts": V,
        "n_faces": int(len(f)),
        "n_identity": N_IDENTITY,
        "part_labels": list(PART_LABELS),
        "vertex_ranges": vranges,
        "polygon_ranges": pranges,
        "expression_names": exp_names,
        "semantic_names": semantic,
        "jaw_shape": JAW_SHAPE,
        "facs": facs,
        "landmarks68": facts.landmarks68,
        "jawline_right": facts.jawline_right,
        "jawline_left": facts.jawline_left,
        "extended_jawline_right": facts.extended_right,
        "extended_jawline_left": facts.extended_left,
        "figures": {"float16": errors, "rig": rig.figures, "pca": pca},
        "pca": {
            "seed": ict_pca.SEED,
            "n_samples": ict_pca.N_SAMPLES,
            "max_actions": ict_pca.MAX_ACTIONS,
            "p_both_sides": ict_pca.P_BOTH_SIDES,
        },
    }
    manifest["arrays_sha256"] = ict_asset.array_digest(arrays)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / ict_asset.ASSET_NAME, **arrays)
    (out / ict_asset.MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
    (out / "LICENSE").write_bytes(repo.read("LICENSE"))
    size = (out / ict_asset.ASSET_NAME).stat().st_size
    log(f"wrote {out / ict_asset.ASSET_NAME} ({size / 2**20:.2f} MiB) in {time.time() - t0:.1f}s")
    return manifest


def pca_figures(shapes: np.ndarray, mix: np.ndarray, names: list[str]) -> dict:
    """How well K = N_PCA_REPORT components reproduce held-out semantic mixes (other seed) and each
    unit shape, and how the coefficients of plausible expressions spread (metres)."""
    K = N_PCA_REPORT
    P = ict_pca.semantic_to_pca_matrix(shapes, mix[:, :K])
    basis = shapes @ mix[:, :K]
    W = ict_pca.sample_weights(names, 300, seed=ict_pca.SEED + 1)
    target = W @ shapes.T
    recon = (W @ P.T) @ basis.T
    err = np.linalg.norm((target - recon).reshape(len(W), -1, 3), axis=2)
    unit = np.linalg.norm((shapes.T - (P.T @ basis.T)).reshape(len(names), -1, 3), axis=2)
    coeffs = W @ P.T
    return {
        "n_components": K,
        "mix_rms_m": float(np.sqrt(np.mean(err**2))),
        "mix_max_m": float(err.max()),
        "unit_shape_max_m": float(unit.max()),
        "unit_worst": names[int(np.argmax(unit.max(1)))],
        "coeff_abs_p99": float(np.percentile(np.abs(coeffs), 99)),
        "coeff_abs_max": float(np.abs(coeffs).max()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", required=True, help="bare git directory of ICT-VGL/ICT-FaceKit")
    ap.add_argument("--out", required=True, help="output folder (faceedit_core/flame/data/ict/)")
    args = ap.parse_args(argv)
    convert(args.repo, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
