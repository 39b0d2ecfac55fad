"""Face encoders: aligned crops in, L2-normalised embeddings out. The protocol every kind offers (``protocol``), the
checkpoint file and model version (``checkpoint``), the kinds — a torch network (``torch_encoder`` over ``nets``),
SFace on ONNX Runtime (``sface``), a fusion of encoders (``fusion``) — the int8 CPU path (``int8``), the Keras
import (``keras_import``), and the factory that loads any of them (``load``). Knows nothing of detection or storage."""
