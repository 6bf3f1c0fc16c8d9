"""Files: atomic writes, checkpoints, the mapper store, OBJ export, restricted unpicklers, the cache
folder, the user's models folder, and the checked dataclass records configs are stored as. Every
writer goes through storage.atomic."""
