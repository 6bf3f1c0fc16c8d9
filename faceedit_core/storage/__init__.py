"""Files: atomic writes, checkpoints, the mapper store, OBJ export, restricted unpicklers, the cache
folder and the user's models folder. Every writer goes through storage.atomic."""
