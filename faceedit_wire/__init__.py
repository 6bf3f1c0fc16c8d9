"""The wire: what the server and the Blender add-on share, torch-free (build_addon.py ships this folder whole).

- `protocol`: message envelope, array encoding, request checks, error codes (msgpack, never pickle)
- `client`: the ZeroMQ client (blocking and polled) the add-on and scripts use
- `limits`: the limits both sides enforce (batch, views, size, intensity, message bytes)
- `net`: the one loopback rule (what may run without CURVE keys)
- `prompts`: the paper's six evaluation prompts (the core, the demo and the add-on's defaults)

Modules here import each other relatively and nothing outside the standard library, numpy,
msgpack and pyzmq, so the same files work as `faceedit_wire` and as the add-on's `faceedit.wire`.
"""
