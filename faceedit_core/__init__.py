"""FaceEdit core: text-guided fine-grained 3D facial expression editing of FLAME heads."""

__version__ = "0.1.0"
