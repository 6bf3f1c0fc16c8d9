"""Operations of the server, run by the job worker: they turn protocol args into Editor calls.

Each handler takes (editor, args, ctx) and returns a result map; ctx carries the progress
callback and the cancel flag of the request. Validation errors raise ProtocolError naming the
field and the limit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceedit_wire import protocol as P
from faceedit_wire.limits import MAX_RENDER_PIXELS

RENDER_CHUNK_PIXELS = 4 * 1024 * 1024  # pixels the editor renders per call (4 views at 1024 px)
POSE_FIELDS = ("global_pose", "neck_pose", "jaw_pose", "eye_pose", "transl")
POSE_WIDTH = {"global_pose": 3, "neck_pose": 3, "jaw_pose": 3, "eye_pose": 6, "transl": 3}


def parse_params(args: dict):
    """args['params'] (a map of arrays) -> FlameParams, checked field by field."""
    from faceedit_core.errors import InputError
    from faceedit_core.params import FlameParams

    raw = args.get("params")
    if not isinstance(raw, dict) or P.is_array_map(raw):
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


def _edited(editor, params, edit_args: tuple, who: dict, ctx: dict):
    """Editor.edit of params by edit_args (prompt, mapper ids, intensity; `_edit_args`) for the identity
    `who` ({"ws": ...} or {}), with the request's progress and cancel -> EditResult."""
    prompt, ids, intensity = edit_args
    return editor.edit(
        params,
        prompt=prompt,
        mapper_ids=ids,
        intensity=intensity,
        progress=ctx["progress"],
        cancel=ctx["cancelled"],
        **who,
    )


def hello(editor, args, ctx) -> dict:
    result = {
        "protocol": P.PROTOCOL_VERSION,
        "tier": editor.tier,
        "expressions": editor.known_expressions(),
        "capabilities": list(P.OPS),
        "models": public_models(ctx.get("models", {})),
        "limits": {
            "max_batch": P.MAX_BATCH,
            "max_views": P.MAX_VIEWS,
            "max_size": P.MAX_SIZE,
            "max_render_pixels": MAX_RENDER_PIXELS,
            "max_message_bytes": P.MAX_MESSAGE_BYTES,
        },
    }
    if P.get_flag(args, "head_mesh"):
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
        for key, dtype in (("vertex_colours", np.float32), ("drawn_faces", np.uint8)):  # how previews colour it
            if mesh.get(key) is not None:
                result["head"][key] = np.asarray(mesh[key], dtype)
    if "expression_basis" in args:  # the Blender add-on checks a FLAME rig's Exp keys against these
        result["expression_basis"] = expression_basis(editor, args["expression_basis"])
    return result


def public_models(models: dict) -> dict:
    """What the server's models are, as clients see them: file names (alone or in lists), never server paths."""

    def name(value):
        return Path(value).name if isinstance(value, str) else value

    return {k: [name(x) for x in v] if isinstance(v, list) else name(v) for k, v in models.items()}


def expression_basis(editor, ids) -> dict:
    """{"ids": [k], "dirs": float32 [K, V, 3]}: the head's expression blendshapes for components ids."""
    if not isinstance(ids, list) or not 1 <= len(ids) <= 16 or not all(type(i) is int for i in ids):
        raise P.ProtocolError(P.INVALID_FIELD, "field 'expression_basis' must be a list of 1..16 component indices")
    n = editor.layer.n_exp
    bad = [i for i in ids if not 0 <= i < n]
    if bad:
        raise P.ProtocolError(
            P.INVALID_FIELD, f"field 'expression_basis' holds {bad}: this head's components are 0..{n - 1}"
        )
    dirs = editor.layer.exprdirs[ids].detach().float().cpu().numpy()
    return {"ids": ids, "dirs": dirs.reshape(len(ids), -1, 3).astype(np.float32)}


def edit(editor, args, ctx) -> dict:
    params = parse_params(args)
    prompt, ids, intensity = _edit_args(args)
    if prompt is None and not ids:
        raise P.ProtocolError(P.INVALID_FIELD, "an edit needs field 'prompt' or 'mapper_ids'")
    result = _edited(editor, params, (prompt, ids, intensity), identity(editor, args), ctx)
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
    params = parse_params(args)
    prompt, ids, intensity = _edit_args(args)
    who = identity(editor, args)
    size = int(P.get_number(args, "size", 512, 16, P.MAX_SIZE))
    cams = _cameras(args)
    pixels = params.batch_size * len(cams) * size * size
    if pixels > MAX_RENDER_PIXELS:
        raise P.ProtocolError(
            P.TOO_LARGE,
            f"a render of {params.batch_size} item(s) x {len(cams)} view(s) at size {size} is {pixels} pixels, "
            f"the limit is {MAX_RENDER_PIXELS} (fields 'params', 'turntable.views' or 'cameras', 'size')",
        )
    if prompt is not None or ids:
        params = _edited(editor, params, (prompt, ids, intensity), who, ctx).params
    return {
        "images": render_pngs(editor, params, cams, size, ctx, who),
        "cameras": cams.eg3d_c().numpy().astype(np.float32),
        "size": size,
        "params": params_to_wire(params),
    }


def _cameras(args: dict):
    """Field 'cameras' [N,25] or 'turntable' {views, pitch, yaw_min, yaw_max} -> Cameras."""
    import torch

    from faceedit_core.errors import InputError
    from faceedit_core.render.cameras import Cameras, turntable

    if "cameras" in args:
        cameras = P.get_array(args, "cameras", 2, last=25, max_first=P.MAX_VIEWS)
        try:
            return Cameras.from_eg3d_c(torch.from_numpy(cameras).float())
        except InputError as exc:
            raise P.ProtocolError(P.INVALID_FIELD, f"cameras: {exc}") from None
    spec = P.get_map(args, "turntable")
    views = int(P.get_number(spec, "views", 8, 1, P.MAX_VIEWS))
    try:
        return turntable(
            views,
            (P.get_number(spec, "yaw_min", -180, -360, 360), P.get_number(spec, "yaw_max", 180, -360, 360)),
            P.get_number(spec, "pitch", 0, -80, 80),
        )
    except InputError as exc:
        raise P.ProtocolError(P.INVALID_FIELD, f"turntable: {exc}") from None


def render_pngs(editor, params, cams, size: int, ctx: dict, who: dict) -> list[list[bytes]]:
    """PNG bytes [B][N]: the editor renders one item and at most RENDER_CHUNK_PIXELS at a time, each
    chunk becomes PNGs before the next, so memory stays flat in the number of items and views.
    who: Editor keyword arguments per item ({"ws": [1 or B,28,512]} or {})."""
    from faceedit_core.errors import Cancelled
    from faceedit_core.render.cameras import Cameras
    from faceedit_core.render.images import png_bytes

    per_call = max(1, RENDER_CHUNK_PIXELS // (size * size))
    total, done, out = params.batch_size * len(cams), 0, []
    for b in range(params.batch_size):
        pngs, own = [], {k: v[min(b, len(v) - 1)][None] for k, v in who.items()}  # this item's latent
        for lo in range(0, len(cams), per_call):
            if ctx["cancelled"]():
                raise Cancelled(f"render cancelled after {done} of {total} images")
            chunk = Cameras(cams.cam2world[lo : lo + per_call], cams.intrinsics[lo : lo + per_call])
            images = editor.render(params.index(b), chunk, size, cancel=ctx["cancelled"], **own)
            pngs += [png_bytes(img) for img in images[0]]
            done += len(chunk)
            ctx["progress"]({"stage": "render", "step": done, "total": total})
        out.append(pngs)
    return out


def train(editor, args, ctx) -> dict:
    prompt = args.get("prompt")
    if not isinstance(prompt, str):
        raise P.ProtocolError(P.INVALID_FIELD, "field 'prompt' must be a string")
    extra = _paper_train_args(editor, args)
    mapper_id = editor.train(prompt, progress=ctx["progress"], cancel=ctx["cancelled"], **extra)
    return {"mapper_id": mapper_id, "prompt": prompt}


# ---------------------------------------------------------------- the paper tier's optional fields
def _paper_only(editor, field: str) -> None:
    if editor.tier != "paper":
        raise P.ProtocolError(P.INVALID_FIELD, f"field '{field}' needs the paper tier (faceedit-server --models DIR)")


def identity(editor, args: dict) -> dict:
    """Field 'identity' (paper tier): {"seed": int}, {"latent": name in the models folder's latents/}
    or {"ws": float [1 or B,28,512]} -> {"ws": tensor} for Editor.edit / render; {} when absent."""
    if "identity" not in args:
        return {}
    _paper_only(editor, "identity")
    spec = P.get_map(args, "identity")
    if len(spec) != 1 or next(iter(spec)) not in ("seed", "latent", "ws"):
        raise P.ProtocolError(
            P.INVALID_FIELD, "field 'identity' must be one of {seed: int}, {latent: name}, {ws: [B,28,512]}"
        )
    if "ws" in spec:
        import torch

        ws = P.get_array(spec, "ws", 3, last=512, max_first=P.MAX_BATCH)
        if ws.shape[1] != 28:
            raise P.ProtocolError(
                P.INVALID_FIELD, f"field 'identity.ws' has shape {list(ws.shape)}, expected [B,28,512]"
            )
        return {"ws": torch.from_numpy(np.ascontiguousarray(ws, np.float32))}
    if "seed" in spec and (type(spec["seed"]) is not int or not 0 <= spec["seed"] < 2**63):
        raise P.ProtocolError(P.INVALID_FIELD, "field 'identity.seed' must be an integer within 0..2^63-1")
    if "latent" in spec and not isinstance(spec["latent"], str):
        raise P.ProtocolError(P.INVALID_FIELD, "field 'identity.latent' must be a latent file's name")
    return {"ws": editor.identity_latent(seed=spec.get("seed"), latent=spec.get("latent"), names_only=True)}


def _paper_train_args(editor, args: dict) -> dict:
    """Fields of 'train' (paper tier): 'refs' (FLAME arrays of reference expressions) or 'refs_dir'
    (a folder of EMOCA/DECA outputs in the models folder's refs/, by name), 'neutral', 'basis',
    'basis_prompts'."""
    extra = {}
    for field in ("refs", "refs_dir", "neutral", "basis", "basis_prompts"):
        if field in args:
            _paper_only(editor, field)
    if "refs" in args and "refs_dir" in args:
        raise P.ProtocolError(P.INVALID_FIELD, "give field 'refs' or 'refs_dir', not both")
    if "refs" in args:
        extra["refs"] = parse_params({"params": args["refs"]})
    if "refs_dir" in args:
        if not isinstance(args["refs_dir"], str):
            raise P.ProtocolError(
                P.INVALID_FIELD, "field 'refs_dir' must be the name of a folder in the models folder's refs/"
            )
        extra["refs"] = editor.references_folder(args["refs_dir"])
    if "neutral" in args:
        extra["neutral"] = P.get_flag(args, "neutral")
    if "basis" in args:
        if args["basis"] not in ("gram_schmidt", "plain", "pca", "none"):
            raise P.ProtocolError(P.INVALID_FIELD, "field 'basis' must be one of gram_schmidt, plain, pca, none")
        extra["basis"] = args["basis"]
    if "basis_prompts" in args:
        bp = args["basis_prompts"]
        if not isinstance(bp, list) or not 1 <= len(bp) <= 256 or not all(isinstance(t, str) and t.strip() for t in bp):
            raise P.ProtocolError(P.INVALID_FIELD, "field 'basis_prompts' must be a list of 1..256 non-empty strings")
        extra["basis_prompts"] = bp
    return extra


def invert(editor, args, ctx) -> dict:
    """Paper tier, paper Sec. VI: 'photo' (PNG/JPEG bytes, aligned as Next3D's data), 'params' (its
    FLAME fit, one set), optional 'name' (save as the models folder's latents/<name>), 'steps'
    (default 500), 'mode' ("w" or "w+") -> {latent, ws [1,28,512], cameras [1,25], losses}."""
    from faceedit_core.paper.invert import InvertConfig

    _paper_only(editor, "photo")
    photo = args.get("photo")
    if not isinstance(photo, (bytes, bytearray)) or not photo:
        raise P.ProtocolError(P.INVALID_FIELD, "field 'photo' must be the bytes of a PNG or JPEG image")
    name = args.get("name")
    if name is not None and not isinstance(name, str):
        raise P.ProtocolError(P.INVALID_FIELD, "field 'name' must be a latent file's name")
    if args.get("mode", "w") not in ("w", "w+"):
        raise P.ProtocolError(P.INVALID_FIELD, "field 'mode' must be 'w' or 'w+'")
    steps = P.get_number(args, "steps", 500, 1, 10_000)
    if steps != int(steps):
        raise P.ProtocolError(P.INVALID_FIELD, "field 'steps' must be an integer")
    cfg = InvertConfig(steps=int(steps), mode=args.get("mode", "w"))
    out = editor.invert(photo, parse_params(args), name, cfg, progress=ctx["progress"], cancel=ctx["cancelled"])
    return {
        "latent": None if out["latent"] is None else name,
        "ws": out["ws"].cpu().numpy().astype(np.float32),
        "cameras": out["c"].cpu().numpy().astype(np.float32),
        "losses": out["losses"],
    }


HANDLERS = {"hello": hello, "edit": edit, "render": render, "train": train, "invert": invert}
