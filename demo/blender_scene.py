"""The Blender half of `make demo`, run by the bpy module in .venv-blender:

    .venv-blender/bin/python demo/blender_scene.py ZIP ADDRESS OUT_DIR

Installs the extension, adds the demo head, edits it with the paper's six prompts through the
add-on's operators (non-blocking requests, polled here), renders a contact sheet (neutral + six
edits, front and three-quarter) and a Cycles turntable of the smile, places the server's renders
of the smile as packed image planes, keys an expression reel and saves OUT_DIR/faceedit_demo.blend.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import bpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "blender_addon" / "in_blender"))
from common import configure, install  # noqa: E402

SIZE, SAMPLES, FRAMES = 256, 16, 8


def run(fe, op: str, label: str) -> None:
    """Call an operator and poll the add-on until its reply is applied, printing progress."""
    getattr(bpy.ops.faceedit, op)()
    last = None
    while fe.session.JOBS.poll_step():
        job = fe.session.JOBS.job
        step = job.progress.get("step") if job is not None else None
        if step != last and (step is None or step == 1 or step % 100 == 0):
            print(f"  {fe.session.JOBS.status.message}", flush=True)
        last = step
        time.sleep(0.05)
    status = fe.session.JOBS.status
    if status.error:
        raise SystemExit(f"{label}: {status.error}")
    print(f"{label}: {status.message}", flush=True)


def stage() -> None:
    """An empty scene with a soft key light, a fill and a grey world."""
    for ob in list(bpy.data.objects):
        bpy.data.objects.remove(ob)
    world = bpy.data.worlds.new("FaceEdit world")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.18, 0.19, 0.21, 1.0)
    bpy.context.scene.world = world
    for name, energy, rot in (("Key", 3.0, (0.9, 0.2, -0.6)), ("Fill", 1.0, (1.1, -0.3, 0.9))):
        light = bpy.data.objects.new(name, bpy.data.lights.new(name, "SUN"))
        light.data.energy, light.rotation_euler = energy, rot
        bpy.context.scene.collection.objects.link(light)


def main() -> None:
    zip_path, address, out = sys.argv[-3:]
    out = Path(out).resolve()
    t0 = time.perf_counter()
    fe = install(zip_path)
    prompts = fe.wire.prompts.PAPER_PROMPTS  # the paper's six, from the wire the add-on ships
    configure(fe, address, timeout_s=120.0, retries=1)
    scene = bpy.context.scene
    stage()
    run(fe, "connect", "connect")
    run(fe, "add_demo_head", "demo head")
    head = scene.faceedit.target
    report = {"head": head.name, "vertices": len(head.data.vertices), "edits": {}}
    for prompt in prompts:
        t = time.perf_counter()
        scene.faceedit.prompt, scene.faceedit.intensity = prompt, 1.0
        run(fe, "edit_expression", prompt)
        report["edits"][fe.apply.key_name(prompt)] = {
            "seconds": round(time.perf_counter() - t, 2),
            "status": fe.session.JOBS.status.message,
        }
    t = time.perf_counter()
    frames = fe.batch.turntable(
        scene, [None, *prompts], str(out / "blender_frames"), frames=FRAMES, size=SIZE, samples=SAMPLES, indices=[0, 1]
    )
    sheet = fe.batch.contact_sheet(
        [[paths[i] for paths in frames.values()] for i in (0, 1)], str(out / "blender_contact_sheet.png")
    )
    turn = fe.batch.turntable(scene, [prompts[0]], str(out / "turntable"), frames=FRAMES, size=SIZE, samples=SAMPLES)
    report["render_seconds"] = round(time.perf_counter() - t, 2)
    report["contact_sheet"], report["turntable"] = str(sheet), [str(p) for p in next(iter(turn.values()))]
    # the server's own renders of the smile beside the head (packed), then an expression reel
    scene.faceedit.prompt, scene.faceedit.views, scene.faceedit.view_size = prompts[0], 4, 256
    run(fe, "render_views", "render views")
    names = [fe.apply.key_name(p) for p in prompts]
    fe.apply.solo_key(head, None)
    for i, name in enumerate(names):
        kb = head.data.shape_keys.key_blocks[name]
        for frame, value in ((1 + 20 * i, 0.0), (11 + 20 * i, 1.0), (21 + 20 * i, 0.0)):
            kb.value = value
            fe.apply.keyframe_key(head, name, frame)
    scene.frame_start, scene.frame_end = 1, 1 + 20 * len(names)
    scene.frame_set(11)
    blend = out / "faceedit_demo.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), compress=True)
    report["blend"], report["seconds"] = str(blend), round(time.perf_counter() - t0, 2)
    (out / "blender_report.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {blend}, {sheet}, {len(report['turntable'])} turntable frames in {out / 'turntable'}")


if __name__ == "__main__":
    main()
