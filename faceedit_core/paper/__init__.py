"""The paper tier: Dual Mappers over Next3D and FLAME, trained with the CLIP-PAE and ArcFace
identity losses on the user's own weights (models folder: flame/, next3d/, clip/, arcface/, mappers/)."""
