"""Export: distillation, ONNX export with validation, quantisation, TensorRT engines, verified bundles."""
