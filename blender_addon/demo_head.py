"""The demo head in Blender, built from the server's head mesh (`hello` with head_mesh).

Geometry and UVs as the server sends them (FLAME coordinates, metres, +Y up; the object is turned
90 degrees about X to stand up). When the server also sends how its preview renders colour the
head (the ICT head: `vertex_colours` [V,3] sRGB in [0,1], `drawn_faces` [F]), the colours become
the point colour attribute COLOUR_ATTR, which the head's material reads through a Color Attribute
node (and solid view shows), so skin, lips, brows, sclera and iris, teeth, gums and lashes read as
such; the faces the renders leave out (lacrimal fluid, eye blend and occlusion shells, the lash
cards beyond their roots) get a second, fully transparent material. Other heads get one skin
material.
"""

from __future__ import annotations

import math

import bpy
import numpy as np

DEMO_NAME = "FaceEdit demo head"
SKIN_RGBA = (0.8, 0.6, 0.5, 1.0)
COLOUR_ATTR = "FaceEdit colour"
HIDDEN_MATERIAL = "FaceEdit hidden parts"


def build_demo_head(context, head: dict):
    """A mesh object from the server's head {vertices [V,3], faces [F,3], uvs [T,2], uv_faces [F,3],
    optional vertex_colours [V,3] and drawn_faces [F]}, linked to the scene at the 3D cursor."""
    verts, faces = np.asarray(head["vertices"], np.float32), np.asarray(head["faces"], np.int32)
    mesh = bpy.data.meshes.new(DEMO_NAME)
    mesh.vertices.add(len(verts))
    mesh.vertices.foreach_set("co", verts.ravel())
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", faces.ravel())
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    mesh.polygons.foreach_set("use_smooth", np.ones(len(faces), bool))
    if head.get("uvs") is not None and head.get("uv_faces") is not None:
        uv = np.asarray(head["uvs"], np.float32)[np.asarray(head["uv_faces"], np.int64).ravel()]
        mesh.uv_layers.new(name="UVMap").data.foreach_set("uv", uv.ravel())
    mesh.update(calc_edges=True)
    colours = head.get("vertex_colours")
    if colours is not None:
        mesh.materials.append(_colour_material(mesh, np.asarray(colours, np.float32)))
        drawn = head.get("drawn_faces")
        if drawn is not None and not np.asarray(drawn).all():
            mesh.materials.append(_hidden_material())
            mesh.polygons.foreach_set("material_index", (np.asarray(drawn) == 0).astype(np.int32))
    else:
        mesh.materials.append(_skin_material())
    obj = bpy.data.objects.new(DEMO_NAME, mesh)
    obj.rotation_euler = (math.pi / 2, 0.0, 0.0)
    obj.location = context.scene.cursor.location
    obj["faceedit_head"] = str(head["head_hash"])
    obj["faceedit_n_shape"], obj["faceedit_n_exp"] = int(head["n_shape"]), int(head["n_exp"])
    context.scene.collection.objects.link(obj)
    return obj


def _principled(name: str, rgba):
    """A node material whose Principled BSDF has this base colour -> (material, its BSDF node)."""
    mat = bpy.data.materials.new(name)
    mat.diffuse_color = rgba
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes.get("Principled BSDF")
    bsdf.inputs["Base Color"].default_value = rgba
    bsdf.inputs["Roughness"].default_value = 0.55
    return mat, bsdf


def _skin_material():
    return _principled("FaceEdit skin", SKIN_RGBA)[0]


def _colour_material(mesh, colours: np.ndarray):
    """The point colour attribute COLOUR_ATTR from colours [V,3] (sRGB) and a material that uses it."""
    attr = mesh.color_attributes.new(COLOUR_ATTR, "FLOAT_COLOR", "POINT")
    rgba = np.concatenate([colours, np.ones((len(colours), 1), np.float32)], axis=1)
    attr.data.foreach_set("color_srgb", rgba.ravel())
    mesh.color_attributes.active_color_name = COLOUR_ATTR  # solid view's Attribute colour
    mesh.color_attributes.default_color_name = COLOUR_ATTR  # the one renders and exporters use
    mat, bsdf = _principled("FaceEdit parts", SKIN_RGBA)
    node = mat.node_tree.nodes.new("ShaderNodeVertexColor")
    node.layer_name = COLOUR_ATTR
    node.location = (bsdf.location[0] - 300, bsdf.location[1])
    mat.node_tree.links.new(node.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def _hidden_material():
    """Fully transparent in Cycles, EEVEE and solid view: the faces the preview renders leave out."""
    mat = bpy.data.materials.new(HIDDEN_MATERIAL)
    mat.diffuse_color = (0.5, 0.5, 0.5, 0.0)
    mat.use_nodes = True
    nodes = mat.node_tree.nodes
    out = nodes.get("Material Output")
    for node in [n for n in nodes if n != out]:
        nodes.remove(node)
    clear = nodes.new("ShaderNodeBsdfTransparent")
    mat.node_tree.links.new(clear.outputs["BSDF"], out.inputs["Surface"])
    mat.use_backface_culling = True
    return mat
