"""Operations of the server, run by the job worker: they turn protocol args into Editor calls.

Each handler takes (editor, args, ctx) and returns a result map; ctx carries the progress
callback and the cancel flag of the request. Validation errors raise ProtocolError naming the
field and the limit.
"""

from __future__ import annotations

import numpy as np

from faceedit_wire import protocol as P

POSE_FIELDS = ("global_pose", "neck_pose", "jaw_pose", "eye_pose", "transl")
POSE_WIDTH = {"global_pose": 3, "neck_pose": 3, "jaw_pose": 3, "eye_pose": 6, "transl": 3}


def parse_params(args: dict):
    """args['params'] (a map of arrays) -> FlameParams, checked field by field."""
    from faceedit_core.errors import InputError
    from faceedit_core.params import FlameParams

    raw = args.get("params")
    if not isinstance(raw, dict):
        raise P.ProtocolError(P.INVALID_FIELD, "field 'params' must be a map of FLAME arrays (shape, expression, ...)")
    arrays = {
        "shape": P.get_array(raw, "shape", 2, max_first=P.MAX_BATCH),
        "expression": P.get_array(raw, "expression", 2, max_first=P.MAX_BATCH),
    }
    for name in POSE_FIELDS:
        value = P.get_array(raw, name, 2, last=POSE_WIDTH[name], max_first=P.MAX_BATCH, required=False)
        if value is not None:
            arrays[name] = value
    try:
        return FlameParams.from_numpy(arrays)
    except InputError as exc:
        raise P.ProtocolError(P.INVALID_FIELD, f"params: {exc}") from None


def params_to_wire(params) -> dict:
    return {k: v.astype(np.float32) for k, v in params.to_numpy().items()}


def _edit_args(args: dict) -> tuple[str | None, list[str], float]:
    prompt = args.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise P.ProtocolError(P.INVALID_FIELD, "field 'prompt' must be a string")
    ids = args.get("mapper_ids", [])
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise P.ProtocolError(P.INVALID_FIELD, "field 'mapper_ids' must be a list of strings")
    return prompt, ids, P.get_number(args, "intensity", 1.0, -P.MAX_INTENSITY, P.MAX_INTENSITY)


def hello(editor, args, ctx) -> dict:
    result = {
        "protocol": P.PROTOCOL_VERSION,
        "tier": editor.tier,
        "expressions": editor.known_expressions(),
        "capabilities": list(P.OPS),
        "models": ctx.get("models", {}),
        "limits": {
            "max_batch": P.MAX_BATCH,
            "max_views": P.MAX_VIEWS,
            "max_size": P.MAX_SIZE,
            "max_message_bytes": P.MAX_MESSAGE_BYTES,
        },
    }
    if args.get("head_mesh"):
        mesh = editor.head_mesh()
        result["head"] = {
            "vertices": np.asarray(mesh["vertices"], np.float32),
            "faces": np.asarray(mesh["faces"], np.int32),
            "uvs": np.asarray(mesh["uvs"], np.float32) if mesh["uvs"] is not None else None,
            "uv_faces": np.asarray(mesh["uv_faces"], np.int32) if mesh["uv_faces"] is not None else None,
            "n_shape": mesh["n_shape"],
            "n_exp": mesh["n_exp"],
            "head_hash": mesh["head_hash"],
        }
    return result


def edit(editor, args, ctx) -> dict:
    params = parse_params(args)
    prompt, ids, intensity = _edit_args(args)
    if prompt is None and not ids:
        raise P.ProtocolError(P.INVALID_FIELD, "an edit needs field 'prompt' or 'mapper_ids'")
    result = editor.edit(
        params, prompt=prompt, mapper_ids=ids, intensity=intensity, progress=ctx["progress"], cancel=ctx["cancelled"]
    )
    summary = result.summary()
    return {
        "params": params_to_wire(result.params),
        "vertices": result.vertices.numpy().astype(np.float32),
        "landmarks": result.landmarks.numpy().astype(np.float32),
        "mapper_ids": result.mapper_ids,
        "target": result.target,
        "au": result.au,
        "success": summary["success"],
    }


def render(editor, args, ctx) -> dict:
    import torch

    from faceedit_core.errors import InputError
    from faceedit_core.render.cameras import Cameras, turntable
    from faceedit_core.render.images import png_bytes

    params = parse_params(args)
    prompt, ids, intensity = _edit_args(args)
    if prompt is not None or ids:
        params = editor.edit(
            params,
            prompt=prompt,
            mapper_ids=ids,
            intensity=intensity,
            progress=ctx["progress"],
            cancel=ctx["cancelled"],
        ).params
    size = int(P.get_number(args, "size", 512, 16, P.MAX_SIZE))
    if "cameras" in args:
        cams = Cameras.from_eg3d_c(
            torch.from_numpy(P.get_array(args, "cameras", 2, last=25, max_first=P.MAX_VIEWS)).float()
        )
    else:
        spec = args.get("turntable", {})
        if not isinstance(spec, dict):
            raise P.ProtocolError(P.INVALID_FIELD, "field 'turntable' must be a map {views, pitch, yaw_min, yaw_max}")
        views = int(P.get_number(spec, "views", 8, 1, P.MAX_VIEWS))
        try:
            cams = turntable(
                views,
                (P.get_number(spec, "yaw_min", -180, -360, 360), P.get_number(spec, "yaw_max", 180, -360, 360)),
                P.get_number(spec, "pitch", 0, -80, 80),
            )
        except InputError as exc:
            raise P.ProtocolError(P.INVALID_FIELD, f"turntable: {exc}") from None
    images = editor.render(params, cams, size, progress=ctx["progress"], cancel=ctx["cancelled"])
    return {
        "images": [[png_bytes(img) for img in item] for item in images],
        "cameras": cams.eg3d_c().numpy().astype(np.float32),
        "size": size,
        "params": params_to_wire(params),
    }


def train(editor, args, ctx) -> dict:
    prompt = args.get("prompt")
    if not isinstance(prompt, str):
        raise P.ProtocolError(P.INVALID_FIELD, "field 'prompt' must be a string")
    return {"mapper_id": editor.train(prompt, progress=ctx["progress"], cancel=ctx["cancelled"]), "prompt": prompt}


HANDLERS = {"hello": hello, "edit": edit, "render": render, "train": train}
